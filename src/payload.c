/*-------------------------------------------------------------------------
 *
 * payload.c
 *	  Bodies, whatever the service: a plan (the service's, made once per
 *	  row type and mapping) and the build of one row; and what every
 *	  service's builder shares: rows, mappings, value formatting,
 *	  validation messages and JSON output.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "payload.h"

/* A plan for rows of desc; raises for a bad mapping. */
PayloadPlan *
payload_plan_create(SyncTarget *target, TupleDesc desc, Jsonb *mapping)
{
	List	   *entries = mapping_parse(mapping, target->service);
	PayloadPlan *plan = target->service->plan_create(target, desc, entries);

	plan->service = target->service;
	plan->target = target;
	return plan;
}

void
payload_build(PayloadPlan *plan, RowValues *row, Payload *out)
{
	memset(out, 0, sizeof(Payload));
	plan->service->build(plan, row, out);
}

void
payload_raise(PayloadError *error)
{
	ereport(ERROR,
			(errcode(error->sqlstate),
			 errmsg("%s", error->message),
			 error->detail ? errdetail("%s", error->detail) : 0,
			 error->hint ? errhint("%s", error->hint) : 0));
	pg_unreachable();
}

/* The error as one readable line, for push_result.error and the queue. */
char *
payload_error_text(PayloadError *error)
{
	if (error->detail)
		return psprintf("%s (%s)", error->message, error->detail);
	return pstrdup(error->message);
}

/*
 * The columns (0-based attnos) a plan reads: two rows that agree on them
 * give the same body.
 */
int *
payload_source_columns(PayloadPlan *plan, int *n)
{
	return plan->service->source_columns(plan, n);
}

/* Appends col's attno to the array (sized for all columns of the row). */
void
add_source_column(int *columns, int *n, SourceColumn *col)
{
	if (col == NULL)
		return;
	for (int i = 0; i < *n; i++)
		if (columns[i] == col->attno)
			return;
	columns[(*n)++] = col->attno;
}

void
row_values_from_record(HeapTupleHeader rec, RowValues *row)
{
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	row_values_from_tuple(row->desc, &tuple, row);
}

void
row_values_from_tuple(TupleDesc desc, HeapTuple tuple, RowValues *row)
{
	row->desc = desc;
	row->values = palloc(desc->natts * sizeof(Datum));
	row->nulls = palloc(desc->natts * sizeof(bool));
	heap_deform_tuple(tuple, desc, row->values, row->nulls);
}

/* What kind of JSON value v is, for messages: "an array", "a number"... */
const char *
json_value_kind(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "an object" :
				"an array";
		case jbvArray:
			return "an array";
		default:
			return "an object";
	}
}

/* v as JSON text, cut to about 60 bytes, for messages. */
char *
json_value_excerpt(JsonbValue *v)
{
	Jsonb	   *jb = JsonbValueToJsonb(v);
	char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	int			len = strlen(s);

	if (len <= 60)
		return s;
	len = pg_mbcliplen(s, len, 57);
	return psprintf("%.*s...", len, s);
}

/*
 * mapping_parse
 *		The mapping argument as a list of MappingEntry.  Keys must be API
 *		fields; values a column name, null (do not send) or, for a field
 *		the service lets take one, an object of names -> column names.
 */
List *
mapping_parse(Jsonb *mapping, const ServiceDescriptor *service)
{
	List	   *entries = NIL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	bool		is_custom;

	if (mapping == NULL)
		return NIL;
	if (!JB_ROOT_IS_OBJECT(mapping) || JB_ROOT_IS_SCALAR(mapping))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mapping must be a JSON object of API field names to column names"),
				 errhint("For example '{\"unique_id\": \"banner_id\"}'.")));

	it = JsonbIteratorInit(&mapping->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		MappingEntry *e;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;

		if (!service->is_field(key))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mapping key \"%s\" is not a field of the %s API", key,
							service->label),
					 errhint("Keys are API field names and values are column names, as in '{\"%s\": \"your_column\"}'.",
							 service->example_field)));

		e = palloc0(sizeof(MappingEntry));
		e->field = key;
		is_custom = service->takes_object != NULL && service->takes_object(key);
		if (v.type == jbvString)
			e->column = pnstrdup(v.val.string.val, v.val.string.len);
		else if (v.type == jbvNull)
			e->column = NULL;
		else if (is_custom && v.type == jbvBinary &&
				 JsonContainerIsObject(v.val.binary.data))
			e->object = JsonbValueToJsonb(&v);
		else if (is_custom)		/* an array is no empty object: say so */
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mapping for %s field \"%s\" must be an object of field names to column names, or a column name, not %s",
							service->label, key, json_value_kind(&v)),
					 errdetail("The mapping gives \"%s\": %s.", key, json_value_excerpt(&v)),
					 errhint("For example '{\"%s\": %s}', or the name of a json or jsonb column.",
							 key, service->object_example)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mapping for \"%s\" must be a column name or null, not %s",
							key, json_value_kind(&v))));
		entries = lappend(entries, e);
	}
	return entries;
}

MappingEntry *
mapping_find(List *entries, const char *field)
{
	ListCell   *lc;

	if (field == NULL)
		return NULL;
	foreach(lc, entries)
	{
		MappingEntry *e = lfirst(lc);

		if (strcmp(e->field, field) == 0)
			return e;
	}
	return NULL;
}

int
row_find_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i;
	}
	return -1;
}

void
column_ref_init(SourceColumn *ref, TupleDesc desc, int attno)
{
	Form_pg_attribute att = TupleDescAttr(desc, attno);
	Oid			typid = getBaseType(att->atttypid);

	ref->attno = attno;
	ref->colname = pstrdup(NameStr(att->attname));
	ref->typid = typid;
	switch (typid)
	{
		case TEXTOID:
		case VARCHAROID:
			ref->conv = CONV_TEXT;
			break;
		case NAMEOID:
			ref->conv = CONV_NAME;
			break;
		case BPCHAROID:
			ref->conv = CONV_BPCHAR;
			break;
		case NUMERICOID:
			ref->conv = CONV_NUMERIC;
			break;
		case FLOAT4OID:
			ref->conv = CONV_FLOAT4;
			break;
		case FLOAT8OID:
			ref->conv = CONV_FLOAT8;
			break;
		case DATEOID:
			ref->conv = CONV_DATE;
			break;
		case TIMESTAMPOID:
			ref->conv = CONV_TIMESTAMP;
			break;
		case TIMESTAMPTZOID:
			ref->conv = CONV_TIMESTAMPTZ;
			break;
		case BOOLOID:
			ref->conv = CONV_BOOL;
			break;
		case JSONOID:
			ref->conv = CONV_JSON;
			break;
		case JSONBOID:
			ref->conv = CONV_JSONB;
			break;
		default:
			{
				Oid			outfn;
				bool		varlena;

				ref->conv = CONV_OTHER;
				getTypeOutputInfo(att->atttypid, &outfn, &varlena);
				fmgr_info(outfn, &ref->outfn);
			}
	}
}

/*
 * column_for_field
 *		The column that feeds an API field: the one the mapping names (NULL
 *		if the mapping says null), else the column named like the field or
 *		its alternate name.  A mapping naming a missing column raises.
 */
SourceColumn *
column_for_field(TupleDesc desc, List *mapping, const char *field,
				 const char *alt_name, const char *service_label)
{
	MappingEntry *e = mapping_find(mapping, field);
	int			attno;
	SourceColumn  *ref;

	if (e == NULL)
		e = mapping_find(mapping, alt_name);

	if (e != NULL)
	{
		if (e->column == NULL)
			return NULL;
		attno = row_find_column(desc, e->column);
		if (attno < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("mapping for %s field \"%s\" names column \"%s\", which the row does not have",
							service_label, e->field, e->column),
					 errhint("Check the spelling; column names are case sensitive.")));
	}
	else
	{
		attno = row_find_column(desc, field);
		if (attno < 0 && alt_name)
			attno = row_find_column(desc, alt_name);
		if (attno < 0)
			return NULL;
	}

	ref = palloc0(sizeof(SourceColumn));
	column_ref_init(ref, desc, attno);
	return ref;
}

static PayloadError *
date_range_error(SourceColumn *ref, const char *field)
{
	return payload_error(ERRCODE_DATETIME_FIELD_OVERFLOW,
						 psprintf("the date for field \"%s\" is out of range: it must be between 0001-01-01 and 9999-12-31",
								  field),
						 psprintf("The value comes from column \"%s\".", ref->colname),
						 NULL);
}

static char *
format_ymd(SourceColumn *ref, int year, int month, int day, const char *field,
		   PayloadError **error)
{
	char	   *s;

	if (year < 1 || year > 9999)
	{
		*error = date_range_error(ref, field);
		return NULL;
	}
	/* yyyy-mm-dd by hand: this runs for every date of every queued row */
	s = palloc(11);
	s[0] = '0' + year / 1000;
	s[1] = '0' + year / 100 % 10;
	s[2] = '0' + year / 10 % 10;
	s[3] = '0' + year % 10;
	s[4] = '-';
	s[5] = '0' + month / 10;
	s[6] = '0' + month % 10;
	s[7] = '-';
	s[8] = '0' + day / 10;
	s[9] = '0' + day % 10;
	s[10] = '\0';
	return s;
}

/*
 * NaN, Infinity and -Infinity are refused wherever a number would be sent.
 * None of the services' fields has a use for them: as a key (unique_id,
 * identifier) "NaN" would make every NaN row the same person, OPS-COM's id
 * fields want digits, and in any other field the word "NaN" or "Infinity"
 * would be stored as if it were a phone number or a custom field's value.
 * Such a value is almost always a computation gone wrong upstream; the row
 * is invalid (22P02) rather than sent.
 */
static PayloadError *
not_finite_error(SourceColumn *ref, const char *service_label,
				 const char *field, const char *what)
{
	return payload_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
						 psprintf("%s field \"%s\" must be a finite number, not %s",
								  service_label, field, what),
						 psprintf("The value comes from column \"%s\", of type %s.",
								  ref->colname, format_type_be(ref->typid)),
						 "NaN and infinities mean nothing to the service: store a real number, or NULL to leave the field out.");
}

static const char *
float_not_finite(double d)
{
	if (isnan(d))
		return "NaN";
	if (isinf(d))
		return d > 0 ? "Infinity" : "-Infinity";
	return NULL;
}

/*
 * column_value_text
 *		A non-NULL column value as the text that is sent: dates as
 *		yyyy-mm-dd whatever DateStyle, char(n) without its padding, floats
 *		as the shortest decimal that reads back exactly whatever
 *		extra_float_digits, numeric as numeric_out writes it, everything
 *		else by the type's output function.  A value that cannot be sent is
 *		reported in *error; service_label and field name it there.
 */
char *
column_value_text(SourceColumn *ref, Datum value, const char *service_label,
				  const char *field, PayloadError **error)
{
	*error = NULL;
	switch (ref->conv)
	{
		case CONV_TEXT:
			return TextDatumGetCString(value);
		case CONV_NAME:
			return pstrdup(NameStr(*DatumGetName(value)));
		case CONV_NUMERIC:
			{
				Numeric		num = DatumGetNumeric(value);
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(num)));

				if (numeric_is_nan(num) || numeric_is_inf(num))
				{
					/* s is NaN, Infinity or -Infinity */
					*error = not_finite_error(ref, service_label, field, s);
					return NULL;
				}
				return s;
			}
		case CONV_FLOAT4:
		case CONV_FLOAT8:
			{
				double		d = ref->conv == CONV_FLOAT4 ?
					(double) DatumGetFloat4(value) : DatumGetFloat8(value);
				const char *bad = float_not_finite(d);
				char	   *s;

				if (bad)
				{
					*error = not_finite_error(ref, service_label, field, bad);
					return NULL;
				}
				/* what float4out/float8out print with extra_float_digits > 0 */
				s = palloc(DOUBLE_SHORTEST_DECIMAL_LEN);
				if (ref->conv == CONV_FLOAT4)
					float_to_shortest_decimal_buf(DatumGetFloat4(value), s);
				else
					double_to_shortest_decimal_buf(d, s);
				return s;
			}
		case CONV_BPCHAR:
			{
				char	   *s = TextDatumGetCString(value);
				int			len = strlen(s);

				while (len > 0 && s[len - 1] == ' ')
					s[--len] = '\0';
				return s;
			}
		case CONV_DATE:
			{
				DateADT		date = DatumGetDateADT(value);
				int			y,
							m,
							d;

				if (DATE_NOT_FINITE(date))
				{
					*error = date_range_error(ref, field);
					return NULL;
				}
				j2date(date + POSTGRES_EPOCH_JDATE, &y, &m, &d);
				return format_ymd(ref, y, m, d, field, error);
			}
		case CONV_TIMESTAMP:
		case CONV_TIMESTAMPTZ:
			{
				Timestamp	ts = DatumGetTimestamp(value);
				struct pg_tm tm;
				fsec_t		fsec;
				int			tz;

				if (TIMESTAMP_NOT_FINITE(ts) ||
					timestamp2tm(ts, ref->conv == CONV_TIMESTAMPTZ ? &tz : NULL,
								 &tm, &fsec, NULL, NULL) != 0)
				{
					*error = date_range_error(ref, field);
					return NULL;
				}
				return format_ymd(ref, tm.tm_year, tm.tm_mon, tm.tm_mday, field, error);
			}
		case CONV_BOOL:
			return pstrdup(DatumGetBool(value) ? "true" : "false");
		case CONV_JSON:
			return TextDatumGetCString(value);
		case CONV_JSONB:
			return JsonbToCString(NULL, &DatumGetJsonbP(value)->root, 0);
		case CONV_OTHER:
			return OutputFunctionCall(&ref->outfn, value);
	}
	return NULL;				/* keep compiler quiet */
}

PayloadError *
payload_error(int sqlstate, const char *message, const char *detail,
			  const char *hint)
{
	PayloadError *e = palloc0(sizeof(PayloadError));

	e->sqlstate = sqlstate;
	e->message = pstrdup(message);
	e->detail = detail ? pstrdup(detail) : NULL;
	e->hint = hint ? pstrdup(hint) : NULL;
	return e;
}

static char *
source_detail(SourceColumn *col)
{
	return col ? psprintf("The value comes from column \"%s\".", col->colname) : NULL;
}

PayloadError *
check_max_length(const char *service_label, const char *field, SourceColumn *col,
				 const char *value, int max_chars)
{
	int			chars;

	/* bytes >= characters: most values need no counting */
	if (max_chars <= 0 || strlen(value) <= (size_t) max_chars)
		return NULL;
	chars = pg_mbstrlen(value);
	if (chars <= max_chars)
		return NULL;
	return payload_error(ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
						 psprintf("%s field \"%s\" is too long: %d characters, the limit is %d",
								  service_label, field, chars, max_chars),
						 source_detail(col),
						 "Shorten the value, or map another column with the mapping argument.");
}

/*
 * Is the UTF-8 character at p a blank or a control character beyond ASCII:
 * a C1 control or a character of Unicode's White_Space property (no-break
 * space, the typographic spaces, line and paragraph separators, ideographic
 * space)?  A pasted email often carries one, invisibly.
 */
static bool
is_unicode_blank(const unsigned char *p)
{
	pg_wchar	c = utf8_to_unicode(p);

	return (c >= 0x80 && c <= 0x9f) || c == 0xa0 || c == 0x1680 ||
		(c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
		c == 0x202f || c == 0x205f || c == 0x3000;
}

/*
 * An email shape: one '@', a local part, a domain with a dot inside it,
 * no blanks or control characters, Unicode ones included (but for a
 * SQL_ASCII database, whose bytes mean nothing in particular).  What the
 * services would accept is not published; this catches the common
 * mistakes before sending.
 */
PayloadError *
check_email(const char *service_label, const char *field, const char *value)
{
	const char *at = strchr(value, '@');
	const char *dot;
	const char *utf8 = value;
	bool		ok = true;
	bool		blank = false;
	int			encoding = GetDatabaseEncoding();

	/* scanned as UTF-8, what it will be on the wire */
	if (encoding != PG_UTF8 && encoding != PG_SQL_ASCII)
		utf8 = pg_server_to_any(value, strlen(value), PG_UTF8);
	for (const char *p = utf8; *p && !blank; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= ' ' || c == 0x7f)
			blank = true;
		else if (c >= 0x80 && encoding != PG_SQL_ASCII)
		{
			/* valid UTF-8 (the database's, or converted): complete */
			blank = is_unicode_blank((const unsigned char *) p);
			p += pg_utf_mblen((const unsigned char *) p) - 1;
		}
	}
	if (blank || at == NULL || at == value || strchr(at + 1, '@') != NULL)
		ok = false;
	else
	{
		dot = strrchr(at + 1, '.');
		if (dot == NULL || dot == at + 1 || dot[1] == '\0' ||
			strstr(at + 1, "..") != NULL)
			ok = false;
	}
	if (ok)
		return NULL;
	return payload_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
						 psprintf("%s field \"%s\" is not an email address: \"%s\"",
								  service_label, field, value),
						 blank ? "It contains a blank or a control character, perhaps an invisible one such as a no-break space." : NULL,
						 "An email address looks like name@example.edu.");
}

PayloadError *
missing_field_error(const char *service_label, const char *field,
					SourceColumn *col, const char *hint)
{
	char	   *detail = col ?
		psprintf("Column \"%s\" is NULL or empty.", col->colname) :
		psprintf("The row has no column \"%s\" and the mapping names none.", field);

	return payload_error(ERRCODE_NOT_NULL_VIOLATION,
						 psprintf("%s field \"%s\" is required", service_label, field),
						 detail,
						 hint ? hint :
						 psprintf("Give it a value, or map a column to it: mapping => '{\"%s\": \"your_column\"}'.",
								  field));
}

/* The length of s, or -1 when a character of it needs escaping in JSON. */
static int
plain_json_length(const char *s)
{
	const char *p = s;

	for (; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == '"' || *p == '\\')
			return -1;
	return p - s;
}

/* Copies len bytes the caller has made room for (enlargeStringInfo). */
static inline void
put_bytes(StringInfo buf, const char *s, int len)
{
	memcpy(buf->data + buf->len, s, len);
	buf->len += len;
}

/*
 * A JSON string, escaped as escape_json() does, with the runs that need
 * no escaping copied at once (most values have no character to escape).
 */
static void
append_json_string(StringInfo buf, const char *s)
{
	const char *run = s;

	appendStringInfoChar(buf, '"');
	for (const char *p = s; *p; p++)
	{
		if ((unsigned char) *p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		appendBinaryStringInfo(buf, run, p - run);
		switch (*p)
		{
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				appendStringInfo(buf, "\\u%04x", (int) *p);
		}
		run = p + 1;
	}
	appendStringInfoString(buf, run);
	appendStringInfoChar(buf, '"');
}

/*
 * Appends "field":"value" (after a comma unless first).  field is one of a
 * service's own field names, which need no escaping.  A value with nothing
 * to escape, nearly every one, is written with one check for room and two
 * copies: the sync trigger builds a body per changed row, and the calls
 * per piece were a sixth of its cost.
 */
void
json_add_field(StringInfo buf, bool *first, const char *field, const char *value)
{
	int			field_len = strlen(field);
	int			value_len = plain_json_length(value);

	/* ,"field":"value" and the terminating NUL, if the value is plain */
	enlargeStringInfo(buf, field_len + Max(value_len, 0) + 7);
	if (!*first)
		buf->data[buf->len++] = ',';
	*first = false;
	buf->data[buf->len++] = '"';
	put_bytes(buf, field, field_len);
	put_bytes(buf, "\":", 2);
	if (value_len < 0)
	{
		buf->data[buf->len] = '\0';
		append_json_string(buf, value);
		return;
	}
	buf->data[buf->len++] = '"';
	put_bytes(buf, value, value_len);
	buf->data[buf->len++] = '"';
	buf->data[buf->len] = '\0';
}

void
json_add_string(StringInfo buf, bool *first, const char *key, const char *value)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	append_json_string(buf, key);
	appendStringInfoChar(buf, ':');
	append_json_string(buf, value);
}

/* raw is a JSON value already (a number, a boolean, an object ...) */
void
json_add_raw(StringInfo buf, bool *first, const char *key, const char *raw)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	append_json_string(buf, key);
	appendStringInfoChar(buf, ':');
	appendStringInfoString(buf, raw);
}

void
json_add_bool(StringInfo buf, bool *first, const char *key, bool value)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	append_json_string(buf, key);
	appendStringInfoString(buf, value ? ":true" : ":false");
}
