/*-------------------------------------------------------------------------
 *
 * cloudcard_diff.c
 *	  Drift against CloudCard.  cloudcard_diff(person, mapping, server):
 *	  the fields whose value in CloudCard differs from what the row would
 *	  send; cloudcard_drift(query, mapping, server): the same for every row
 *	  of a query, the look-ups many at once (row_lookup.c).  Read-only at
 *	  the remote: a person is read with GET /person/{key}?findBy=... as
 *	  cloudcard_person() reads it (request_cloudcard.c).
 *
 *	  The row's side is its body as cloudcard_payload() shows it (the same
 *	  builder).  Every field the body sends is compared, as text the way a
 *	  DBA reads it: strings unquoted, booleans true or false, numbers as
 *	  their JSON text.  A field CloudCard's answer lacks, or has as null,
 *	  differs (remote NULL); a field the body does not send is not compared.
 *	  - ROLE_* flags against the person's "authorities": "true" when the
 *	    role is among them, else "false".  With the server option
 *	    update_roles, the update removes every role the body does not grant,
 *	    so a role the body leaves out compares as "false" too.
 *	  - Custom fields (the body's "customFields") against CloudCard's
 *	    "customFields", as field "customFields.<name>".  CloudCard gives a
 *	    value either as it is or as its CustomFieldValue object, whose
 *	    "value" is read.
 *	  A person CloudCard does not have (404) is one row: field "*", the key
 *	  as local, remote NULL.
 *
 *	  CloudCard's answer is redacted (response.c) before it is read here: a
 *	  token it echoes in a field shows as [redacted].
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "cloudcard.h"
#include "pause.h"
#include "push.h"
#include "response.h"
#include "row_lookup.h"

PG_FUNCTION_INFO_V1(campus_sync_cloudcard_diff);
PG_FUNCTION_INFO_V1(campus_sync_cloudcard_drift);

/* Where the differences go: the function's result. */
typedef struct DriftOut
{
	ReturnSetInfo *rsinfo;
	bool		with_key;		/* cloudcard_drift: the person's key first */
	const char *person_key;
} DriftOut;

static void
put_row(DriftOut *out, const char *field, const char *local, const char *remote)
{
	Datum		values[4];
	bool		nulls[4] = {0};
	int			n = 0;

	if (out->with_key)
		values[n++] = CStringGetTextDatum(out->person_key);
	values[n++] = CStringGetTextDatum(field);
	values[n] = local ? CStringGetTextDatum(local) : (Datum) 0;
	nulls[n++] = local == NULL;
	values[n] = remote ? CStringGetTextDatum(remote) : (Datum) 0;
	nulls[n++] = remote == NULL;
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, values, nulls);
}

/* A row when the two differ; a value CloudCard lacks (NULL) differs. */
static void
compare_value(DriftOut *out, const char *field, const char *local, const char *remote)
{
	if (local == NULL && remote == NULL)
		return;
	if (local == NULL || remote == NULL || strcmp(local, remote) != 0)
		put_row(out, field, local, remote);
}

/* A member of a JSON object; NULL when obj is not an object or lacks it. */
static JsonbValue *
member(JsonbContainer *obj, const char *key, JsonbValue *buf)
{
	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	return getKeyJsonValueFromContainer(obj, key, strlen(key), buf);
}

/* A member that is an object (or an array); NULL when it is anything else. */
static JsonbContainer *
member_container(JsonbContainer *obj, const char *key, bool object)
{
	JsonbValue	buf;
	JsonbValue *v = member(obj, key, &buf);

	if (v == NULL || v->type != jbvBinary ||
		(object ? !JsonContainerIsObject(v->val.binary.data) :
		 !JsonContainerIsArray(v->val.binary.data)))
		return NULL;
	return v->val.binary.data;
}

/* A value of CloudCard's answer as text; NULL for none or null. */
static char *
remote_text(JsonbValue *v)
{
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			return NULL;		/* null */
	}
}

/* A custom field's value at CloudCard: as it is, or its CustomFieldValue's "value". */
static char *
custom_text(JsonbContainer *custom, const char *name)
{
	JsonbValue	buf;
	JsonbValue	inner;
	JsonbValue *v = member(custom, name, &buf);
	JsonbValue *value;

	if (v != NULL && v->type == jbvBinary &&
		(value = member(v->val.binary.data, "value", &inner)) != NULL)
		return remote_text(value);
	return remote_text(v);
}

/*
 * Does the person hold the role, by its "authorities" (objects with an
 * "authority", or plain names)?  "true", "false", or NULL when the answer
 * has no list of them.
 */
static const char *
role_text(JsonbContainer *person, const char *role)
{
	JsonbContainer *list = member_container(person, "authorities", false);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		held = false;

	if (list == NULL)
		return NULL;
	it = JsonbIteratorInit(list);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue	buf;
		JsonbValue *name = &v;

		if (tok != WJB_ELEM)
			continue;
		if (v.type == jbvBinary)
			name = member(v.val.binary.data, "authority", &buf);
		if (name != NULL && name->type == jbvString &&
			name->val.string.len == (int) strlen(role) &&
			memcmp(name->val.string.val, role, name->val.string.len) == 0)
			held = true;
	}
	return held ? "true" : "false";
}

/* A member of the row's body as text (it holds strings and booleans). */
static char *
local_text(const cJSON *item)
{
	return response_scalar_text(item);
}

/*
 * The differences between the row's body and the person CloudCard has:
 * the person's own fields in the body's order, the roles an update would
 * remove, then the custom fields.
 */
static void
compare_person(DriftOut *out, const char *body, JsonbContainer *person, bool update_roles)
{
	cJSON	   *root = cJSON_Parse(body);

	if (root == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not read a CloudCard body.")));
	PG_TRY();
	{
		const cJSON *item;
		const cJSON *custom = NULL;
		const char *role;

		cJSON_ArrayForEach(item, root)
		{
			JsonbValue	buf;

			if (strcmp(item->string, "customFields") == 0)
				custom = item;
			else if (strncmp(item->string, "ROLE_", 5) == 0)
				compare_value(out, item->string, local_text(item),
							  role_text(person, item->string));
			else
				compare_value(out, item->string, local_text(item),
							  remote_text(member(person, item->string, &buf)));
		}
		for (int i = 0; update_roles && (role = cloudcard_role_at(i)) != NULL; i++)
			if (cJSON_GetObjectItemCaseSensitive(root, role) == NULL)
				compare_value(out, role, "false", role_text(person, role));
		if (custom != NULL)
		{
			JsonbContainer *remote_custom = member_container(person, "customFields", true);

			cJSON_ArrayForEach(item, custom)
				compare_value(out, psprintf("customFields.%s", item->string),
							  local_text(item),
							  remote_custom ? custom_text(remote_custom, item->string) : NULL);
		}
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
}

/* The person of a 2xx answer; raises when it is not a JSON object. */
static JsonbContainer *
remote_person(SyncJob *job)
{
	Jsonb	   *jb = NULL;

	if (job->response != NULL && response_is_json(job->response))
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(job->response)));
	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not compare CloudCard person \"%s\"", job->person_key),
				 errdetail("CloudCard answered HTTP %d to GET /person/{key} with %s, not a person (a JSON object).",
						   job->http_status,
						   job->response == NULL ? "an empty body" :
						   jb != NULL ? response_excerpt(job->response) :
						   response_first_line(job->response))));
	return &jb->root;
}

/* The rows of one ended look-up; a failed one raises, as cloudcard_person() does. */
static void
drift_rows(SyncJob *job, DriftOut *out)
{
	if (job->outcome != JOB_OK)
		push_raise_job_failure(job, psprintf("look up CloudCard person \"%s\"",
											 job->person_key));
	out->person_key = job->person_key;
	if (job->http_status == 404)
		put_row(out, "*", job->person_key, NULL);
	else
		compare_person(out, job->payload, remote_person(job),
					   cloudcard_options(job->target)->update_roles);
}

/*
 * cloudcard_diff(person, mapping, server) -> table(field, local, remote)
 *		One row, one look-up; an invalid row raises as cloudcard_payload()
 *		does, a failed look-up as cloudcard_person() does.
 */
Datum
campus_sync_cloudcard_diff(PG_FUNCTION_ARGS)
{
	DriftOut	out = {0};
	SyncJob		job;

	InitMaterializedSRF(fcinfo, 0);
	out.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (PG_ARGISNULL(PUSH_ARG_PERSON))
		return (Datum) 0;
	push_job_for_call(fcinfo, &cloudcard_service, JOB_LOOKUP, &job);
	job_run(&job);
	drift_rows(&job, &out);
	return (Datum) 0;
}

static void
drift_done(SyncJob *job, void *arg)
{
	drift_rows(job, (DriftOut *) arg);
}

/*
 * cloudcard_drift(query, mapping, server)
 *		-> table(person_key, field, local, remote)
 *		cloudcard_diff() for every row of the query (run with the caller's
 *		privileges), up to the server's concurrency look-ups at once.
 */
Datum
campus_sync_cloudcard_drift(PG_FUNCTION_ARGS)
{
	DriftOut	out = {0};
	SyncTarget *target;
	TargetSecret *secret;

	InitMaterializedSRF(fcinfo, 0);
	out.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	out.with_key = true;
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	target = target_load(server_arg(fcinfo, 2), NULL, &cloudcard_service, GetUserId());
	check_not_paused(target->server_oid, target->server_name);
	secret = target_secret(target, GetUserId(), false);

	row_lookup_run("cloudcard_drift", text_to_cstring(PG_GETARG_TEXT_PP(0)), target, secret,
				   PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), drift_done, &out);
	return (Datum) 0;
}
