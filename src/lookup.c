/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Look-ups that help a DBA map and reconcile: OPS-COM's user types and
 *	  a CloudCard person as CloudCard has it.  Failures raise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "payload.h"
#include "request.h"
#include "response.h"
#include "row_plan.h"

PG_FUNCTION_INFO_V1(campus_sync_opscom_user_types);
PG_FUNCTION_INFO_V1(campus_sync_cloudcard_person);

static void
raise_job_failure(SyncJob *job, const char *what)
{
	ereport(ERROR,
			(errcode(job->transport_error ? ERRCODE_CONNECTION_FAILURE : ERRCODE_FDW_ERROR),
			 errmsg("could not %s", what),
			 errdetail("%s", job->error)));
}

/* opscom_user_types(server) -> (id, type_name, ext_info) */
Datum
campus_sync_opscom_user_types(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SyncTarget *target = target_load(server_arg(fcinfo, 0), NULL, SERVICE_OPSCOM,
									 GetUserId());
	TargetSecret *secret = target_secret(target, GetUserId(), false);
	SyncJob		job;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	job_init(&job, JOB_USER_TYPES, target, secret, NULL, NULL);
	job_run(&job);
	if (job.outcome != JOB_OK)
		raise_job_failure(&job, "list the OPS-COM user types");

	foreach(lc, response_user_types(job.response))
	{
		UserType   *ut = lfirst(lc);
		Datum		values[3];
		bool		nulls[3];

		values[0] = ut->id ? CStringGetTextDatum(ut->id) : (Datum) 0;
		nulls[0] = ut->id == NULL;
		values[1] = ut->type_name ? CStringGetTextDatum(ut->type_name) : (Datum) 0;
		nulls[1] = ut->type_name == NULL;
		values[2] = ut->ext_info ? CStringGetTextDatum(ut->ext_info) : (Datum) 0;
		nulls[2] = ut->ext_info == NULL;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * cloudcard_person(key, server) -> the person as jsonb, NULL when not found
 *
 * The key goes into the path GET /person/{key}: keys that would name
 * another resource there ("", ".", "..", anything with a "/") are refused
 * before any request, as they are in a row (cloudcard_key_error).
 */
Datum
campus_sync_cloudcard_person(PG_FUNCTION_ARGS)
{
	SyncTarget *target;
	TargetSecret *secret;
	SyncJob		job;
	char	   *key;
	PayloadError *key_error;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	target = target_load(server_arg(fcinfo, 1), NULL, SERVICE_CLOUDCARD, GetUserId());
	if ((key_error = cloudcard_key_error(target->find_by_email, key, NULL)) != NULL)
		payload_raise(key_error);
	secret = target_secret(target, GetUserId(), false);

	job_init(&job, JOB_GET_PERSON, target, secret, NULL, key);
	job_run(&job);
	if (job.outcome != JOB_OK)
		raise_job_failure(&job, psprintf("look up CloudCard person \"%s\"", key));
	if (job.http_status == 404 || job.response == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(response_jsonb(job.response));
}
