/*-------------------------------------------------------------------------
 *
 * service_cloudcard.c
 *	  CloudCard as a service: its options and secrets, its SQL functions
 *	  (cloudcard_payload, cloudcard_upsert, cloudcard_login_link,
 *	  cloudcard_person) and its descriptor.  The body is built in
 *	  payload_cloudcard.c, the requests are made in request_cloudcard.c,
 *	  sessions are kept by cloudcard_auth.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "cloudcard.h"
#include "cloudcard_auth.h"
#include "pause.h"
#include "push.h"
#include "response.h"

PG_FUNCTION_INFO_V1(campus_sync_cloudcard_payload);
PG_FUNCTION_INFO_V1(campus_sync_cloudcard_upsert);
PG_FUNCTION_INFO_V1(campus_sync_cloudcard_login_link);
PG_FUNCTION_INFO_V1(campus_sync_cloudcard_person);

static const OptionDef cloudcard_server_options[] = {
	{"find_by", OPT_CHOICE, 0, 0, "identifier|email", true},
	{"send_invitation", OPT_BOOL, 0, 0, NULL, true},
	{"update_roles", OPT_BOOL, 0, 0, NULL, true},
	{"api", OPT_CHOICE, 0, 0, "person|people", true},
	{NULL}
};

static const char *const cloudcard_secrets[] = {
	"auth_token", CLOUDCARD_PAT_OPTION, NULL
};

/* Called with values the validator has checked. */
static void
cloudcard_set_option(void *opts, const char *name, const char *value)
{
	CloudcardOptions *options = opts;

	if (strcmp(name, "find_by") == 0)
		options->find_by_email = (strcmp(value, "email") == 0);
	else if (strcmp(name, "api") == 0)
		options->api_people = (strcmp(value, "people") == 0);
	else if (strcmp(name, "send_invitation") == 0)
		(void) parse_bool(value, &options->send_invitation);
	else if (strcmp(name, "update_roles") == 0)
		(void) parse_bool(value, &options->update_roles);
}

/*
 * The base the service's paths hang off: the url without a trailing "/".
 * CloudCard's own tools configure theirs with "/api"
 * (https://api.cloudcard.us/api); campus_sync puts "/api" in the paths
 * that have it, so a url ending in "/api" loses it: with or without, the
 * same endpoints, and never /api/api/.
 */
static char *
cloudcard_base_url(const char *value)
{
	char	   *url = pstrdup(value);
	size_t		len = strlen(url);
	char	   *scheme_end = strstr(url, "://");
	char	   *path = scheme_end ? strchr(scheme_end + 3, '/') : NULL;

	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	/* "/api" at the end of the path, not the host https://api */
	if (path != NULL && path <= url + len - 4 && strcmp(url + len - 4, "/api") == 0)
	{
		len -= 4;
		url[len] = '\0';
		while (len > 0 && url[len - 1] == '/')
			url[--len] = '\0';
	}
	return url;
}

static void
cloudcard_check_secrets(List *options)
{
	if (defelem_value(options, "auth_token") != NULL &&
		defelem_value(options, CLOUDCARD_PAT_OPTION) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("give either \"auth_token\" or \"persistent_access_token\", not both")));
}

static const char *
cloudcard_choose_secret(List *options, const char **option)
{
	const char *value = defelem_value(options, CLOUDCARD_PAT_OPTION);

	*option = CLOUDCARD_PAT_OPTION;
	if (value == NULL)
	{
		*option = "auth_token";
		value = defelem_value(options, "auth_token");
	}
	return value;
}

static const char *
cloudcard_key_field(SyncTarget *target)
{
	return cloudcard_options(target)->find_by_email ? "email" : "identifier";
}

static bool
cloudcard_takes_object(const char *field)
{
	return strcmp(field, "customFields") == 0 || strcmp(field, "custom_fields") == 0;
}

/* cloudcard_payload(person, mapping, server, options) -> jsonb */
Datum
campus_sync_cloudcard_payload(PG_FUNCTION_ARGS)
{
	return push_preview(fcinfo, &cloudcard_service);
}

/* cloudcard_upsert(person, mapping, server, options) -> push_result */
Datum
campus_sync_cloudcard_upsert(PG_FUNCTION_ARGS)
{
	return push_now(fcinfo, &cloudcard_service);
}

/*
 * cloudcard_login_link(person, mapping, server) -> text
 *		Creates or updates the cardholder and returns the single-sign-on
 *		link (see request_cloudcard.c for how).  A look-up: failures raise.
 */
Datum
campus_sync_cloudcard_login_link(PG_FUNCTION_ARGS)
{
	SyncJob		job;

	if (PG_ARGISNULL(PUSH_ARG_PERSON))
		PG_RETURN_NULL();
	push_job_for_call(fcinfo, &cloudcard_service, JOB_LOGIN_LINK, &job);
	job_run(&job);
	if (job.outcome != JOB_OK)
		push_raise_job_failure(&job, psprintf("get a CloudCard login link for \"%s\"",
											  job.person_key));
	PG_RETURN_TEXT_P(cstring_to_text(job.login_link));
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
	target = target_load(server_arg(fcinfo, 1), NULL, &cloudcard_service, GetUserId());
	check_not_paused(target->server_oid, target->server_name);
	if ((key_error = cloudcard_key_error(cloudcard_options(target)->find_by_email,
										 key, NULL)) != NULL)
		payload_raise(key_error);
	secret = target_secret(target, GetUserId(), false);

	job_init(&job, JOB_LOOKUP, target, secret, NULL, key);
	job_run(&job);
	if (job.outcome != JOB_OK)
		push_raise_job_failure(&job, psprintf("look up CloudCard person \"%s\"", key));
	if (job.http_status == 404 || job.response == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(response_jsonb(job.response));
}

const ServiceDescriptor cloudcard_service = {
	.name = "cloudcard",
	.label = "CloudCard",
	.example_url = "https://api.cloudcard.us",
	.init = cloudcard_auth_init,

	.options = cloudcard_server_options,
	.options_size = sizeof(CloudcardOptions),
	.set_option = cloudcard_set_option,
	.base_url = cloudcard_base_url,

	.secret_options = cloudcard_secrets,
	.check_secrets = cloudcard_check_secrets,
	.choose_secret = cloudcard_choose_secret,
	.secret_required = true,
	.secret_example = CLOUDCARD_PAT_OPTION,

	.key_field = cloudcard_key_field,
	.disable_body = "{\"enabled\": false}",
	.example_field = "identifier",
	.is_field = cloudcard_is_field,
	.takes_object = cloudcard_takes_object,
	.object_example = "{\"Class Year\": \"class_year\"}",
	.plan_create = cloudcard_plan_create,
	.build = cloudcard_build,
	.source_columns = cloudcard_source_columns,

	.prepare = cloudcard_prepare,
	.judge = cloudcard_judge,
	.check = cloudcard_check,
};
