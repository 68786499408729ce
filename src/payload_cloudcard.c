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
 *	  deprecated people API; the body built here is the first request's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "payload.h"

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
#define FIELD_EMAIL 0
#define FIELD_IDENTIFIER 1

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
	MappingEntry *e = mapping_find(mapping, "customFields");
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (e == NULL)
		e = mapping_find(mapping, "custom_fields");

	/*
	 * With per-field columns in the mapping, a custom_fields column (if the
	 * row has one) still adds its fields; otherwise the mapping may rename
	 * or drop that column like any other.
	 */
	if (e != NULL && e->object != NULL)
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
	if (e == NULL || e->object == NULL)
		return;

	it = JsonbIteratorInit(&e->object->root);
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
		if (cloudcard_is_standard_key(key))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("custom field \"%s\" has the name of a CloudCard person field", key),
					 errhint("Map it as a top-level key of the mapping instead.")));
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

	plan->base.service = SERVICE_CLOUDCARD;
	plan->base.target = target;
	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
	{
		const CloudcardField *f = &cloudcard_fields[i];
		SourceColumn  *col = column_for_field(desc, mapping, f->name, f->alt_name,
										   "CloudCard");

		if (col && f->kind == CC_BOOL)
			require_type(col, f->name,
						 col->conv == CONV_BOOL || col->conv == CONV_TEXT ||
						 col->conv == CONV_BPCHAR,
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
			char	   *s = column_value_text(col, d, f->name, &e);

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

	*text = column_value_text(col, d, f->name, &e);
	if (e == NULL && f->kind == CC_EMAIL && (*text)[0] != '\0')
		e = check_email("CloudCard", f->name, *text);
	return e;
}

static PayloadError *
add_custom(List **values, const char *name, const char *value)
{
	ListCell   *lc;
	CustomValue *cv;

	if (cloudcard_is_standard_key(name))
		return payload_error(ERRCODE_INVALID_PARAMETER_VALUE,
							 psprintf("custom field \"%s\" has the name of a CloudCard person field",
									  name),
							 NULL,
							 "Rename the key in the custom_fields object.");
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
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												CStringGetDatum(TextDatumGetCString(row->values[col->attno]))));

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return payload_error(ERRCODE_INVALID_PARAMETER_VALUE,
							 "CloudCard custom fields must be a JSON object",
							 psprintf("Column \"%s\" holds another kind of JSON value.", col->colname),
							 "Store an object such as {\"Class Year\": \"2027\"}.");

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
								  cc->name, &e);
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
	int			key_field = target->find_by_email ? FIELD_EMAIL : FIELD_IDENTIFIER;
	ListCell   *lc;

	/* the key first: an invalid row's item still belongs to its person */
	if (field_value(plan, row, key_field, &texts[key_field], &bools[key_field]) == NULL &&
		texts[key_field] != NULL && texts[key_field][0] != '\0')
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
												  target->find_by_email ? "email" : "identifier"));
		return;
	}
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

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < N_CLOUDCARD_FIELDS; i++)
	{
		if (texts[i] != NULL)
			json_add_field(&buf, &first, cloudcard_fields[i].name, texts[i]);
		else if (bools[i] >= 0)
			json_add_bool(&buf, &first, cloudcard_fields[i].name, bools[i] == 1);
	}
	if (custom != NIL && target->api_people)
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
	else
		foreach(lc, custom)
		{
			CustomValue *cv = lfirst(lc);

			json_add_string(&buf, &first, cv->name, cv->value);
		}
	appendStringInfoChar(&buf, '}');

	out->body = buf.data;
}
