/*-------------------------------------------------------------------------
 *
 * payload_opscom.c
 *	  A row as the body of an OPS-COM Push API request (User Create/Update).
 *
 *	  Every field and alternate name of the API page is matched by column
 *	  name; values are sent as strings, numbers included.  The limits below
 *	  are the API page's, in characters.  apiToken is not part of the body
 *	  built here: it is a secret, added only on the wire (request_opscom.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/datetime.h"

#include "opscom.h"

typedef enum OpscomCheck
{
	CHECK_NONE,
	CHECK_EMAIL,
	CHECK_REGION,				/* 2-letter postal abbreviation */
	CHECK_DATE,					/* yyyy-mm-dd */
	CHECK_DIGITS				/* an id number */
} OpscomCheck;

typedef struct OpscomField
{
	const char *name;
	int			max_chars;		/* 0: no documented limit */
	OpscomCheck check;
} OpscomField;

/* In the API page's order, which is also the body's. */
static const OpscomField opscom_fields[] = {
	{"unique_id", 50, CHECK_NONE},
	{"login_source", 20, CHECK_NONE},
	{"first_name", 50, CHECK_NONE},
	{"last_name", 50, CHECK_NONE},
	{"user_name", 50, CHECK_NONE},
	{"email", 100, CHECK_EMAIL},
	{"street", 0, CHECK_NONE},
	{"city", 50, CHECK_NONE},
	{"province", 2, CHECK_REGION},
	{"state", 2, CHECK_REGION},
	{"postal_code", 20, CHECK_NONE},
	{"zip", 20, CHECK_NONE},
	{"street2", 20, CHECK_NONE},
	{"city2", 50, CHECK_NONE},
	{"province2", 2, CHECK_REGION},
	{"state2", 2, CHECK_REGION},
	{"postal_code2", 20, CHECK_NONE},
	{"zip2", 20, CHECK_NONE},
	{"phone_cell", 20, CHECK_NONE},
	{"user_type_id", 0, CHECK_DIGITS},
	{"employ_no", 50, CHECK_NONE},
	{"employee_phone", 50, CHECK_NONE},
	{"student_no", 50, CHECK_NONE},
	{"student_phone", 50, CHECK_NONE},
	{"driver_licence_num", 255, CHECK_NONE},
	{"driver_license_num", 255, CHECK_NONE},
	{"date_of_birth", 10, CHECK_DATE},
	{"locker_user_type_id", 0, CHECK_DIGITS},
	{"driver_licence_prov", 2, CHECK_REGION},
	{"driver_license_state", 2, CHECK_REGION},
};

#define N_OPSCOM_FIELDS ((int) lengthof(opscom_fields))
#define FIELD_UNIQUE_ID 0
#define FIELD_LOGIN_SOURCE 1

typedef struct OpscomPlan
{
	PayloadPlan base;
	SourceColumn  *columns[N_OPSCOM_FIELDS];	/* NULL: field not sent */
} OpscomPlan;

bool
opscom_is_field(const char *name)
{
	for (int i = 0; i < N_OPSCOM_FIELDS; i++)
		if (strcmp(opscom_fields[i].name, name) == 0)
			return true;
	return false;
}

int *
opscom_source_columns(PayloadPlan *base, int *n)
{
	OpscomPlan *plan = (OpscomPlan *) base;
	int		   *columns = palloc(sizeof(int) * N_OPSCOM_FIELDS);

	*n = 0;
	for (int i = 0; i < N_OPSCOM_FIELDS; i++)
		add_source_column(columns, n, plan->columns[i]);
	return columns;
}

PayloadPlan *
opscom_plan_create(SyncTarget *target, TupleDesc desc, List *mapping)
{
	OpscomPlan *plan = palloc0(sizeof(OpscomPlan));

	(void) target;			/* payload_plan_create sets plan->target */

	for (int i = 0; i < N_OPSCOM_FIELDS; i++)
		plan->columns[i] = column_for_field(desc, mapping, opscom_fields[i].name,
											NULL, "OPS-COM");
	return &plan->base;
}

static bool
is_valid_ymd(const char *s)
{
	int			y,
				m,
				d;

	for (int i = 0; i < 10; i++)
	{
		if (i == 4 || i == 7)
		{
			if (s[i] != '-')
				return false;
		}
		else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	if (s[10] != '\0')
		return false;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return false;
	return d <= day_tab[isleap(y)][m - 1];
}

static bool
is_ascii_letter(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static PayloadError *
check_value(const OpscomField *f, SourceColumn *col, const char *value)
{
	PayloadError *e;

	if ((e = check_max_length("OPS-COM", f->name, col, value, f->max_chars)) != NULL)
		return e;
	if (value[0] == '\0')
		return NULL;			/* an empty string clears the field */

	switch (f->check)
	{
		case CHECK_NONE:
			break;
		case CHECK_EMAIL:
			return check_email("OPS-COM", f->name, value);
		case CHECK_REGION:
			/* A-Z and a-z only, whatever the locale's isalpha() says */
			if (strlen(value) != 2 || !is_ascii_letter(value[0]) ||
				!is_ascii_letter(value[1]))
				return payload_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
									 psprintf("OPS-COM field \"%s\" must be a 2-letter postal abbreviation such as \"MA\", not \"%s\"",
											  f->name, value),
									 NULL, NULL);
			break;
		case CHECK_DATE:
			if (!is_valid_ymd(value))
				return payload_error(ERRCODE_INVALID_DATETIME_FORMAT,
									 psprintf("OPS-COM field \"%s\" is not a valid date in yyyy-mm-dd form: \"%s\"",
											  f->name, value),
									 NULL,
									 "Use a date column, or text such as 1990-01-31.");
			break;
		case CHECK_DIGITS:
			for (const char *p = value; *p; p++)
				if (*p < '0' || *p > '9')
					return payload_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
										 psprintf("OPS-COM field \"%s\" must be a number, not \"%s\"",
												  f->name, value),
										 NULL,
										 "The ids of OPS-COM user types are listed by campus_sync.opscom_user_types().");
			break;
	}
	return NULL;
}

/* The text of field i in this row; NULL when the row has none. */
static char *
field_value(OpscomPlan *plan, RowValues *row, int i, PayloadError **error)
{
	SourceColumn  *col = plan->columns[i];

	*error = NULL;
	if (col == NULL || row->nulls[col->attno])
		return NULL;
	return column_value_text(col, row->values[col->attno], "OPS-COM",
							 opscom_fields[i].name, error);
}

void
opscom_build(PayloadPlan *base, RowValues *row, Payload *out)
{
	OpscomPlan *plan = (OpscomPlan *) base;
	SyncTarget *target = base->target;
	StringInfoData buf;
	bool		first = true;
	char	   *values[N_OPSCOM_FIELDS];
	ListCell   *lc;

	for (int i = 0; i < N_OPSCOM_FIELDS; i++)
	{
		PayloadError *e;

		values[i] = field_value(plan, row, i, &e);
		if (e == NULL && values[i] != NULL)
			e = check_value(&opscom_fields[i], plan->columns[i], values[i]);
		if (e != NULL)
		{
			out->error = e;
			return;
		}
		/* known even when a later field is invalid: the item is the person's */
		if (i == FIELD_UNIQUE_ID && values[i] != NULL && values[i][0] != '\0')
			out->person_key = values[i];
	}

	if (values[FIELD_LOGIN_SOURCE] == NULL)
		values[FIELD_LOGIN_SOURCE] = opscom_options(target)->login_source;

	if (values[FIELD_UNIQUE_ID] == NULL || values[FIELD_UNIQUE_ID][0] == '\0')
	{
		out->error = missing_field_error("OPS-COM", "unique_id",
										 plan->columns[FIELD_UNIQUE_ID], NULL);
		return;
	}
	if (values[FIELD_LOGIN_SOURCE] == NULL || values[FIELD_LOGIN_SOURCE][0] == '\0')
	{
		out->error = missing_field_error("OPS-COM", "login_source",
										 plan->columns[FIELD_LOGIN_SOURCE],
										 "Add a login_source column, map one, or set the server option login_source (for example ALTER SERVER ... OPTIONS (ADD login_source 'BANNER')).");
		return;
	}
	foreach(lc, target->required_fields)
	{
		const char *name = lfirst(lc);

		for (int i = 0; i < N_OPSCOM_FIELDS; i++)
			if (strcmp(opscom_fields[i].name, name) == 0 &&
				(values[i] == NULL || values[i][0] == '\0'))
			{
				out->error = missing_field_error("OPS-COM", name, plan->columns[i],
												 "The server option required_fields lists it.");
				return;
			}
	}

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < N_OPSCOM_FIELDS; i++)
		if (values[i] != NULL)
			json_add_field(&buf, &first, opscom_fields[i].name, values[i]);
	appendStringInfoChar(&buf, '}');

	out->body = buf.data;
}
