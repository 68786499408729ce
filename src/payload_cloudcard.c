/*-------------------------------------------------------------------------
 *
 * payload_cloudcard.c
 *	  A row as the body of a CloudCard person request.
 *
 *	  Columns match the API's camelCase names or their snake_case forms;
 *	  booleans are JSON booleans; role_* columns become ROLE_* flags;
 *	  custom fields come from a json/jsonb custom_fields column and/or a
 *	  mapping {"customFields": {"Field name": "column"}}.  The current
 *	  person API wants custom fields as top-level keys of an update (PUT)
 *	  and nested under "customFields" in a create (POST) and in the
 *	  deprecated people API.  The body built here has one form whatever
 *	  the request or the server's api: custom fields nested, under
 *	  "customFields", after the person's own; request_cloudcard.c lifts
 *	  them to the top level for an update.
 *	  The person's key (identifier, or email when find_by says so) goes
 *	  into the URL path: keys the path would misread are refused here,
 *	  before anything is queued or sent (cloudcard_key_error).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "compat.h"
#include "cloudcard.h"

typedef enum CloudcardKind
{
	CC_STRING,
	CC_EMAIL,
	CC_BOOL
} CloudcardKind;

typedef struct CloudcardField
{
	const char *name;			/* as the API spells it */
	const char *alt_name;		/* snake_case column name, or NULL */
	CloudcardKind kind;
} CloudcardField;

static const CloudcardField cloudcard_fields[] = {
	{"email", NULL, CC_EMAIL},
	{"identifier", NULL, CC_STRING},
	{"cardholderGroupName", "cardholder_group_name", CC_STRING},
	{"additionalPhotoRequired", "additional_photo_required", CC_BOOL},
	{"enabled", NULL, CC_BOOL},
	{"managerEmail", "manager_email", CC_EMAIL},
	{"managerIdentifier", "manager_identifier", CC_STRING},
	{"ROLE_CARDHOLDER", "role_cardholder", CC_BOOL},
	{"ROLE_OFFICE", "role_office", CC_BOOL},
	{"ROLE_DIRECTOR", "role_director", CC_BOOL},
};

#define N_CLOUDCARD_FIELDS ((int) lengthof(cloudcard_fields))
#define CLOUDCARD_KEY_MAX_CHARS 255
#define FIELD_EMAIL 0
#define FIELD_IDENTIFIER 1
#define FIELD_ENABLED 4

/* A custom field fed by one column (mapping {"customFields": {...}}). */
typedef struct CustomColumn
{
	char	   *name;
	SourceColumn  *column;
} CustomColumn;

typedef struct CloudcardPlan
{
	PayloadPlan base;
	SourceColumn  *columns[N_CLOUDCARD_FIELDS];
	SourceColumn  *custom_json;	/* json/jsonb object of custom fields */
	List	   *custom_columns; /* CustomColumn */
} CloudcardPlan;

/* A custom field's name and value, as they will be sent. */
typedef struct CustomValue
{
	char	   *name;
	char	   *value;
} CustomValue;

bool
cloudcard_is_standard_key(const char *key)
{
	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
		if (strcmp(cloudcard_fields[i].name, key) == 0)
			return true;
	return strcmp(key, "customFields") == 0;
}

/*
 * cloudcard_custom_name_error
 *		Why a custom field may not have this name, or NULL.  In an update
 *		custom fields are top-level keys beside the person's own, so a name
 *		CloudCard reads as something else would not reach the custom field:
 *		a person field, a ROLE_* flag (CloudCard refuses unknown roles), or
 *		a read-only attribute of the person (id, username, authorities).
 *		An empty name can match no custom field.
 */
PayloadError *
cloudcard_custom_name_error(const char *name, const char *hint)
{
	const char *why = NULL;

	if (name[0] == '\0')
		why = "is empty";
	else if (cloudcard_is_standard_key(name))
		why = "is the name of a CloudCard person field";
	else if (strncmp(name, "ROLE_", 5) == 0)
		why = "would be read as a CloudCard role";
	else if (strcmp(name, "id") == 0 || strcmp(name, "username") == 0 ||
			 strcmp(name, "authorities") == 0)
		why = "is the name of a read-only attribute of a CloudCard person";
	if (why == NULL)
		return NULL;
	return payload_error(ERRCODE_INVALID_PARAMETER_VALUE,
						 psprintf("custom field name \"%s\" %s", name, why),
						 "Custom fields are sent as top-level keys of the update (PUT /person), beside the person's own fields.",
						 hint);
}

/*
 * cloudcard_key_error
 *		Why key cannot be a CloudCard person key, or NULL.  The key is a
 *		segment of the request path (/person/{key}), percent-encoded; but
 *		"." is unreserved in RFC 3986 and stays as it is, so "." and ".."
 *		would be dot segments, removed by the client (PUT /person/.. is
 *		PUT /, with the body and the token), and CloudCard's servlet
 *		container refuses "%2F", the encoded "/".  An empty key would name
 *		/person/ itself.  Such keys are refused whatever the api option: a
 *		queued item may be sent after the server's api changes, and the
 *		look-ups (GET /person/{key}) put the key in the path anyway.
 *
 *		CloudCard publishes no length limit.  Keys are capped at
 *		CLOUDCARD_KEY_MAX_CHARS characters (at most 4 bytes each): the
 *		queue indexes items by key, and a btree cannot take an entry of
 *		more than about 2,700 bytes -- one such item would make every
 *		deliver() fail.  OPS-COM's unique_id has its own limit, 50.
 */
PayloadError *
cloudcard_key_error(bool find_by_email, const char *key, SourceColumn *col)
{
	const char *field = find_by_email ? "email" : "identifier";
	char	   *message;
	int			chars;

	/* bytes >= characters: most keys need no counting */
	if (strlen(key) > CLOUDCARD_KEY_MAX_CHARS &&
		(chars = pg_mbstrlen(key)) > CLOUDCARD_KEY_MAX_CHARS)
		return payload_error(ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
							 psprintf("CloudCard field \"%s\" is too long for the person's key: %d characters, the limit is %d",
									  field, chars, CLOUDCARD_KEY_MAX_CHARS),
							 psprintf("CloudCard publishes no limit; campus_sync takes keys of up to %d characters (an email address has at most 254), which fit the URL path and the queue's index.%s",
									  CLOUDCARD_KEY_MAX_CHARS,
									  col ? psprintf(" The value comes from column \"%s\".", col->colname) : ""),
							 col ?
							 psprintf("Correct the %s, or map another column to \"%s\".", field, field) :
							 NULL);
	if (key[0] == '\0')
		message = psprintf("CloudCard field \"%s\" cannot be empty as the person's key in the URL path",
						   field);
	else if (strcmp(key, ".") == 0 || strcmp(key, "..") == 0)
		message = psprintf("CloudCard field \"%s\" cannot be \"%s\" as the person's key in the URL path",
						   field, key);
	else if (strchr(key, '/') != NULL)
		message = psprintf("CloudCard field \"%s\" cannot contain \"/\" as the person's key in the URL path: \"%s\"",
						   field, key);
	else
		return NULL;

	return payload_error(ERRCODE_INVALID_TEXT_REPRESENTATION, message,
						 psprintf("CloudCard finds the person by the %s in the request path /person/{key}, where \".\" and \"..\" are read as the current and the parent path, and a \"/\" is refused even percent-encoded.%s",
								  field,
								  col ? psprintf(" The value comes from column \"%s\".", col->colname) : ""),
						 col ?
						 psprintf("Correct the %s, map another column to \"%s\", or set the server option find_by to '%s'.",
								  field, field, find_by_email ? "identifier" : "email") :
						 psprintf("Such a key cannot be looked up; look the person up by %s on a server whose find_by is '%s'.",
								  find_by_email ? "identifier" : "email",
								  find_by_email ? "identifier" : "email"));
}

/*
 * cloudcard_role_at
 *		The i-th ROLE_* flag a body may send, in the body's order; NULL past
 *		the last.  (cloudcard_diff compares the roles a body leaves out when
 *		the server's update_roles makes the update remove them.)
 */
const char *
cloudcard_role_at(int i)
{
	for (int f = 0; f < N_CLOUDCARD_FIELDS; f++)
		if (strncmp(cloudcard_fields[f].name, "ROLE_", 5) == 0 && i-- == 0)
			return cloudcard_fields[f].name;
	return NULL;
}

bool
cloudcard_is_field(const char *name)
{
	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
		if (strcmp(cloudcard_fields[i].name, name) == 0 ||
			(cloudcard_fields[i].alt_name &&
			 strcmp(cloudcard_fields[i].alt_name, name) == 0))
			return true;
	return strcmp(name, "customFields") == 0 || strcmp(name, "custom_fields") == 0;
}

static void
require_type(SourceColumn *col, const char *field, bool ok, const char *needs)
{
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" cannot feed CloudCard field \"%s\": it is of type %s, the field needs %s",
						col->colname, field, format_type_be(col->typid), needs)));
}

static void
plan_custom_fields(CloudcardPlan *plan, TupleDesc desc, List *mapping)
{
	MappingEntry *m = mapping_find(mapping, "customFields");
	PayloadError *e;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (m == NULL)
		m = mapping_find(mapping, "custom_fields");

	/*
	 * With per-field columns in the mapping, a custom_fields column (if the
	 * row has one) still adds its fields; otherwise the mapping may rename
	 * or drop that column like any other.
	 */
	if (m != NULL && m->object != NULL)
		plan->custom_json = column_for_field(desc, NIL, "custom_fields",
											 "customFields", "CloudCard");
	else
		plan->custom_json = column_for_field(desc, mapping, "customFields",
											 "custom_fields", "CloudCard");
	if (plan->custom_json)
		require_type(plan->custom_json, "customFields",
					 plan->custom_json->conv == CONV_JSON ||
					 plan->custom_json->conv == CONV_JSONB,
					 "json or jsonb (an object of custom field values)");
	if (m == NULL || m->object == NULL)
		return;

	it = JsonbIteratorInit(&m->object->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		CustomColumn *cc;
		int			attno;
		char	   *colname;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mapping for custom field \"%s\" must be a column name", key)));
		if ((e = cloudcard_custom_name_error(key, cloudcard_is_standard_key(key) ?
											 "Map it as a top-level key of the mapping instead." :
											 "Rename the key in the mapping's customFields object.")) != NULL)
			payload_raise(e);
		colname = pnstrdup(v.val.string.val, v.val.string.len);
		attno = row_find_column(desc, colname);
		if (attno < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("mapping for CloudCard custom field \"%s\" names column \"%s\", which the row does not have",
							key, colname),
					 errhint("Check the spelling; column names are case sensitive.")));
		cc = palloc0(sizeof(CustomColumn));
		cc->name = key;
		cc->column = palloc0(sizeof(SourceColumn));
		column_ref_init(cc->column, desc, attno);
		plan->custom_columns = lappend(plan->custom_columns, cc);
	}
}

int *
cloudcard_source_columns(PayloadPlan *base, int *n)
{
	CloudcardPlan *plan = (CloudcardPlan *) base;
	int		   *columns = palloc(sizeof(int) * (N_CLOUDCARD_FIELDS + 1 +
												 list_length(plan->custom_columns)));
	ListCell   *lc;

	*n = 0;
	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
		add_source_column(columns, n, plan->columns[i]);
	add_source_column(columns, n, plan->custom_json);
	foreach(lc, plan->custom_columns)
		add_source_column(columns, n, ((CustomColumn *) lfirst(lc))->column);
	return columns;
}

PayloadPlan *
cloudcard_plan_create(SyncTarget *target, TupleDesc desc, List *mapping)
{
	CloudcardPlan *plan = palloc0(sizeof(CloudcardPlan));

	(void) target;			/* payload_plan_create sets plan->target */

	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
	{
		const CloudcardField *f = &cloudcard_fields[i];
		SourceColumn  *col = column_for_field(desc, mapping, f->name, f->alt_name,
										   "CloudCard");

		if (col && f->kind == CC_BOOL)
			require_type(col, f->name,
						 col->conv == CONV_BOOL || col->conv == CONV_TEXT ||
						 col->conv == CONV_BPCHAR || col->conv == CONV_NAME,
						 "boolean");
		plan->columns[i] = col;
	}
	plan_custom_fields(plan, desc, mapping);
	return &plan->base;
}

static PayloadError *
field_value(CloudcardPlan *plan, RowValues *row, int i, char **text, int *boolean)
{
	const CloudcardField *f = &cloudcard_fields[i];
	SourceColumn  *col = plan->columns[i];
	PayloadError *e = NULL;
	Datum		d;
	bool		b;

	*text = NULL;
	*boolean = -1;
	if (col == NULL || row->nulls[col->attno])
		return NULL;
	d = row->values[col->attno];

	if (f->kind == CC_BOOL)
	{
		if (col->conv == CONV_BOOL)
			b = DatumGetBool(d);
		else
		{
			char	   *s = column_value_text(col, d, "CloudCard", f->name, &e);

			if (e)
				return e;
			if (!parse_bool(s, &b))
				return payload_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
									 psprintf("CloudCard field \"%s\" must be a boolean, not \"%s\"",
											  f->name, s),
									 psprintf("The value comes from column \"%s\".", col->colname),
									 "Use a boolean column, or text such as true or false.");
		}
		*boolean = b ? 1 : 0;
		return NULL;
	}

	*text = column_value_text(col, d, "CloudCard", f->name, &e);
	if (e == NULL && f->kind == CC_EMAIL && (*text)[0] != '\0')
		e = check_email("CloudCard", f->name, *text);
	return e;
}

static PayloadError *
add_custom(List **values, const char *name, const char *value)
{
	ListCell   *lc;
	CustomValue *cv;
	PayloadError *e;

	if ((e = cloudcard_custom_name_error(name, "Rename the key in the custom_fields object.")) != NULL)
		return e;
	foreach(lc, *values)
	{
		cv = lfirst(lc);
		if (strcmp(cv->name, name) == 0)
		{
			cv->value = pstrdup(value);
			return NULL;
		}
	}
	cv = palloc(sizeof(CustomValue));
	cv->name = pstrdup(name);
	cv->value = pstrdup(value);
	*values = lappend(*values, cv);
	return NULL;
}

/*
 * A json value (valid JSON, or the column would not hold it) that jsonb_in
 * would still refuse: a \u0000 escape, or one the database encoding cannot
 * represent.  Checked first so that such a row is reported, not raised:
 * the push functions return it and the trigger queues an invalid item.
 */
static PayloadError *
json_text_error(SourceColumn *col, char *json)
{
	JsonLexContext *lex;
	JsonParseErrorType result;

	lex = cs_json_lexer(json, GetDatabaseEncoding());
	result = pg_parse_json(lex, &nullSemAction);
	if (result == JSON_SUCCESS)
		return NULL;
	/* the SQLSTATEs jsonb_in would raise */
	return payload_error(result == JSON_UNICODE_CODE_POINT_ZERO ||
						 result == JSON_UNICODE_HIGH_ESCAPE ?
						 ERRCODE_UNTRANSLATABLE_CHARACTER :
						 ERRCODE_INVALID_TEXT_REPRESENTATION,
						 psprintf("CloudCard custom fields of column \"%s\" cannot be converted to text",
								  col->colname),
						 json_errdetail(result, lex),
						 "Remove the escape from the JSON value; custom field values are sent as text.");
}

/* The custom fields of the json/jsonb column (an object of scalars). */
static PayloadError *
custom_from_json(CloudcardPlan *plan, RowValues *row, List **values)
{
	SourceColumn  *col = plan->custom_json;
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	PayloadError *e;

	if (col == NULL || row->nulls[col->attno])
		return NULL;
	if (col->conv == CONV_JSONB)
		jb = DatumGetJsonbP(row->values[col->attno]);
	else
	{
		char	   *json = TextDatumGetCString(row->values[col->attno]);

		if ((e = json_text_error(col, json)) != NULL)
			return e;
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	}

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
	{
		JsonbValue	root;

		if (JB_ROOT_IS_SCALAR(jb))
			JsonbExtractScalar(&jb->root, &root);
		else
		{
			root.type = jbvBinary;
			root.val.binary.data = &jb->root;
			root.val.binary.len = VARSIZE(jb) - VARHDRSZ;
		}
		return payload_error(ERRCODE_INVALID_PARAMETER_VALUE,
							 psprintf("CloudCard field \"customFields\" must be a JSON object, not %s",
									  json_value_kind(&root)),
							 psprintf("Column \"%s\" holds %s.", col->colname,
									  json_value_excerpt(&root)),
							 "Store an object such as {\"Class Year\": \"2027\"}, or NULL for no custom fields.");
	}

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *value;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		switch (v.type)
		{
			case jbvNull:
				continue;
			case jbvString:
				value = pnstrdup(v.val.string.val, v.val.string.len);
				break;
			case jbvNumeric:
				value = DatumGetCString(DirectFunctionCall1(numeric_out,
															NumericGetDatum(v.val.numeric)));
				break;
			case jbvBool:
				value = v.val.boolean ? "true" : "false";
				break;
			default:
				return payload_error(ERRCODE_INVALID_PARAMETER_VALUE,
									 psprintf("CloudCard custom field \"%s\" must be a string, number or boolean",
											  key),
									 psprintf("Column \"%s\" holds a nested object or array for it.",
											  col->colname),
									 NULL);
		}
		if ((e = add_custom(values, key, value)) != NULL)
			return e;
	}
	return NULL;
}

static PayloadError *
custom_from_columns(CloudcardPlan *plan, RowValues *row, List **values)
{
	ListCell   *lc;

	foreach(lc, plan->custom_columns)
	{
		CustomColumn *cc = lfirst(lc);
		PayloadError *e = NULL;
		char	   *value;

		if (row->nulls[cc->column->attno])
			continue;
		value = column_value_text(cc->column, row->values[cc->column->attno],
								  "CloudCard custom", cc->name, &e);
		if (e == NULL)
			e = add_custom(values, cc->name, value);
		if (e)
			return e;
	}
	return NULL;
}

void
cloudcard_build(PayloadPlan *base, RowValues *row, Payload *out)
{
	CloudcardPlan *plan = (CloudcardPlan *) base;
	SyncTarget *target = base->target;
	char	   *texts[N_CLOUDCARD_FIELDS];
	int			bools[N_CLOUDCARD_FIELDS];
	List	   *custom = NIL;
	StringInfoData buf;
	bool		first = true;
	bool		find_by_email = cloudcard_options(target)->find_by_email;
	int			key_field = find_by_email ? FIELD_EMAIL : FIELD_IDENTIFIER;
	ListCell   *lc;

	/*
	 * The key first: an invalid row's item still belongs to its person --
	 * if the key could be sent at all ("..", or 3,000 characters, names no
	 * person, and the latter would not fit the queue's index either).
	 */
	if (field_value(plan, row, key_field, &texts[key_field], &bools[key_field]) == NULL &&
		texts[key_field] != NULL && texts[key_field][0] != '\0' &&
		cloudcard_key_error(find_by_email, texts[key_field], NULL) == NULL)
		out->person_key = texts[key_field];

	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
	{
		PayloadError *e = field_value(plan, row, i, &texts[i], &bools[i]);

		if (e)
		{
			out->error = e;
			return;
		}
	}
	if ((out->error = custom_from_json(plan, row, &custom)) != NULL ||
		(out->error = custom_from_columns(plan, row, &custom)) != NULL)
		return;

	if (texts[key_field] == NULL || texts[key_field][0] == '\0')
	{
		out->error = missing_field_error("CloudCard", cloudcard_fields[key_field].name,
										 plan->columns[key_field],
										 psprintf("The server's find_by is '%s', so every person needs one; map a column to it or change find_by.",
												  find_by_email ? "email" : "identifier"));
		return;
	}
	if ((out->error = cloudcard_key_error(find_by_email, texts[key_field],
										  plan->columns[key_field])) != NULL)
		return;
	foreach(lc, target->required_fields)
	{
		const char *name = lfirst(lc);

		for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
			if ((strcmp(cloudcard_fields[i].name, name) == 0 ||
				 (cloudcard_fields[i].alt_name && strcmp(cloudcard_fields[i].alt_name, name) == 0)) &&
				(texts[i] == NULL || texts[i][0] == '\0') && bools[i] < 0)
			{
				out->error = missing_field_error("CloudCard", cloudcard_fields[i].name,
												 plan->columns[i],
												 "The server option required_fields lists it.");
				return;
			}
	}

	/* a DELETE disables the person (on_delete): every other body enables */
	if (target->on_delete_disable && bools[FIELD_ENABLED] < 0)
		bools[FIELD_ENABLED] = 1;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
	{
		if (texts[i] != NULL)
			json_add_field(&buf, &first, cloudcard_fields[i].name, texts[i]);
		else if (bools[i] >= 0)
			json_add_bool(&buf, &first, cloudcard_fields[i].name, bools[i] == 1);
	}
	/* one form whatever the request: request_cloudcard.c flattens the update's */
	if (custom != NIL)
	{
		bool		inner_first = true;

		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		appendStringInfoString(&buf, "\"customFields\":{");
		foreach(lc, custom)
		{
			CustomValue *cv = lfirst(lc);

			json_add_string(&buf, &inner_first, cv->name, cv->value);
		}
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, '}');

	out->body = buf.data;
}
