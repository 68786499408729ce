/*-------------------------------------------------------------------------
 *
 * service_opscom.c
 *	  OPS-COM as a service: its options and secret, its SQL functions
 *	  (opscom_payload, opscom_push, opscom_user_types) and its descriptor.
 *	  The body is built in payload_opscom.c, the requests are made in
 *	  request_opscom.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/defrem.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "opscom.h"
#include "pause.h"
#include "push.h"
#include "response.h"

PG_FUNCTION_INFO_V1(campus_sync_opscom_payload);
PG_FUNCTION_INFO_V1(campus_sync_opscom_push);
PG_FUNCTION_INFO_V1(campus_sync_opscom_user_types);

/* OPS-COM documents apiToken as at most 50 characters. */
#define OPSCOM_API_TOKEN_MAX 50

static const OptionDef opscom_server_options[] = {
	{"login_source", OPT_STRING, 1, 20, NULL, true},
	{NULL}
};

static const char *const opscom_secrets[] = {"api_token", NULL};

static void
opscom_set_option(void *options, const char *name, const char *value)
{
	if (strcmp(name, "login_source") == 0)
		((OpscomOptions *) options)->login_source = pstrdup(value);
}

static void
opscom_check_secrets(List *options)
{
	const char *token = defelem_value(options, "api_token");

	if (token != NULL && pg_mbstrlen(token) > OPSCOM_API_TOKEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("user mapping option \"api_token\" is too long: %d characters, OPS-COM allows at most %d",
						pg_mbstrlen(token), OPSCOM_API_TOKEN_MAX)));
}

static const char *
opscom_choose_secret(List *options, const char **option)
{
	*option = "api_token";
	return defelem_value(options, "api_token");
}

static const char *
opscom_key_field(SyncTarget *target)
{
	(void) target;
	return "unique_id";
}

/* opscom_payload(person, mapping, server, options) -> jsonb */
Datum
campus_sync_opscom_payload(PG_FUNCTION_ARGS)
{
	return push_preview(fcinfo, &opscom_service);
}

/* opscom_push(person, mapping, server, options) -> push_result */
Datum
campus_sync_opscom_push(PG_FUNCTION_ARGS)
{
	return push_now(fcinfo, &opscom_service);
}

/* opscom_user_types(server) -> (id, type_name, ext_info); failures raise */
Datum
campus_sync_opscom_user_types(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SyncTarget *target = target_load(server_arg(fcinfo, 0), NULL, &opscom_service,
									 GetUserId());
	TargetSecret *secret;
	SyncJob		job;
	ListCell   *lc;

	check_not_paused(target->server_oid, target->server_name);
	secret = target_secret(target, GetUserId(), false);
	InitMaterializedSRF(fcinfo, 0);
	job_init(&job, JOB_LOOKUP, target, secret, NULL, NULL);
	job_run(&job);
	if (job.outcome != JOB_OK)
		push_raise_job_failure(&job, "list the OPS-COM user types");

	foreach(lc, opscom_user_types(job.response))
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

const ServiceDescriptor opscom_service = {
	.name = "opscom",
	.label = "OPS-COM",
	.example_url = "https://controller.operationscommander.io",

	.options = opscom_server_options,
	.options_size = sizeof(OpscomOptions),
	.set_option = opscom_set_option,

	.secret_options = opscom_secrets,
	.check_secrets = opscom_check_secrets,
	.choose_secret = opscom_choose_secret,
	.secret_required = true,
	.secret_example = "api_token",

	.key_field = opscom_key_field,
	.cannot_disable = "OPS-COM's Push API creates or updates a user; OPS-COM documents no way to disable or delete one.",
	.example_field = "unique_id",
	.is_field = opscom_is_field,
	.plan_create = opscom_plan_create,
	.build = opscom_build,
	.source_columns = opscom_source_columns,

	.prepare = opscom_prepare,
	.judge = opscom_judge,
	.check = opscom_check,
};
