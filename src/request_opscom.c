/*-------------------------------------------------------------------------
 *
 * request_opscom.c
 *	  The OPS-COM Push API as a job: one POST with apiToken in the body.
 *	  Success only when the body says "status": "success"; an ErrorCode
 *	  body is read whatever the HTTP status (the pages show it with 200,
 *	  the service may send it with a 4xx or 5xx).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "utils/json.h"

#include "opscom.h"

#define OPSCOM_PUSH_PATH "/api/OC_TOMA/v1/profiles/push"
#define OPSCOM_TYPES_PATH "/api/OC_TOMA/v1/profiles/types/list"

/* The OPS-COM body on the wire: the payload with apiToken first. */
static char *
opscom_body(const char *payload, const char *api_token)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"apiToken\":");
	escape_json(&buf, api_token);
	if (payload != NULL && payload[0] == '{' && payload[1] != '}')
	{
		appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, payload + 1);
	}
	else
		appendStringInfoChar(&buf, '}');
	return buf.data;
}

bool
opscom_prepare(SyncJob *job, JobRequest *req)
{
	switch (job->kind)
	{
		case JOB_PUSH:
			req->url = psprintf("%s%s", job->target->url, OPSCOM_PUSH_PATH);
			req->body = opscom_body(job->payload, job->secret->value);
			break;
		case JOB_LOOKUP:		/* the user types */
			req->url = psprintf("%s%s", job->target->url, OPSCOM_TYPES_PATH);
			req->body = opscom_body(NULL, job->secret->value);
			break;
		default:
			elog(ERROR, "OPS-COM has no job of kind %d", (int) job->kind);
	}
	return true;
}

/*
 * Success is a 2xx whose body says "status": "success".  A 2xx body cut at
 * HTTP_MAX_RESPONSE cannot say so: the push may have been applied, but it
 * is not known to be, and repeating it would get the same oversized
 * answer; it fails, and is not retried.  Whether to retry otherwise is the
 * HTTP status's to say, whatever the body.
 */
void
opscom_judge(SyncJob *job, ResponseInfo *info, const char *location)
{
	int			status = job->http_status;
	bool		ok_status = status >= 200 && status < 300;
	JobOutcome	failed = is_temporary_http_status(status) ? JOB_TEMPORARY : JOB_PERMANENT;

	if (job->response_cut && ok_status)
		job_finish(job, JOB_PERMANENT,
				   psprintf("the answer (HTTP %d) was larger than %d bytes and was cut, so OPS-COM's \"status\": \"success\" could not be read; not retried: %s",
							status, HTTP_MAX_RESPONSE,
							response_excerpt(job->response)));
	else if (ok_status && info->status && strcmp(info->status, "success") == 0)
	{
		job->remote_id = info->reference_id;
		job_finish(job, JOB_OK, NULL);
	}
	else if (info->error_code)
		job_finish(job, failed,
				   psprintf("OPS-COM error %s%s: %s", info->error_code,
							ok_status ? "" : psprintf(" (HTTP %d)", status),
							info->error_message ? info->error_message : "(no message)"));
	else if (ok_status)
		job_finish(job, JOB_PERMANENT,
				   psprintf("OPS-COM did not answer \"status\": \"success\": %s",
							response_excerpt(job->response)));
	else
		job_finish(job, failed,
				   job_http_error(job, "", info, failed == JOB_TEMPORARY ? NULL : location));
}

/* check_server(): the user-type list, a read with the apiToken. */
void
opscom_check(SyncTarget *target, TargetSecret *secret, ServerCheck *out)
{
	SyncJob		job;
	char	   *url = psprintf("%s%s", target->url, OPSCOM_TYPES_PATH);

	job_init(&job, JOB_LOOKUP, target, secret, NULL, NULL);
	job_run(&job);
	out->ok = job.outcome == JOB_OK;
	out->http_status = job.http_status;
	if (out->ok)
		out->detail = psprintf("apiToken accepted: %d user types at %s",
							   list_length(opscom_user_types(job.response)), url);
	else if (job.transport_error)
	{
		out->detail = job.error;
		out->hint = check_hint_transport();
	}
	else if (job.http_status == 404)
	{
		out->detail = psprintf("HTTP 404 at %s: is the url right?", url);
		out->hint = pstrdup("The url is the OPS-COM base, such as https://controller.operationscommander.io; campus_sync appends /api/OC_TOMA/v1/...");
	}
	else
	{
		out->detail = job.error;
		out->hint = pstrdup("OPS-COM refuses a wrong apiToken with an error like this one: check the user mapping's api_token (ALTER USER MAPPING ... OPTIONS (SET api_token '...')).");
	}
}

/* The profiles/types/list answer as a list of UserType. */
List *
opscom_user_types(const char *text)
{
	cJSON	   *root;
	List	   *volatile types = NIL;

	if (text == NULL || !response_is_json(text) || (root = cJSON_Parse(text)) == NULL)
		return NIL;

	PG_TRY();
	{
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "user_types");
		const cJSON *item;

		if (!cJSON_IsArray(list))
			list = NULL;
		cJSON_ArrayForEach(item, list)
		{
			UserType   *ut;
			const cJSON *ext;

			if (!cJSON_IsObject(item))
				continue;
			ut = palloc0(sizeof(UserType));
			ut->id = response_member_text(item, "id");
			ut->type_name = response_member_text(item, "type_name");
			ext = cJSON_GetObjectItemCaseSensitive(item, "ext_info");
			if (cJSON_IsObject(ext) || cJSON_IsArray(ext))
			{
				char	   *printed = cJSON_PrintUnformatted(ext);

				if (printed)
				{
					ut->ext_info = pstrdup(printed);
					cJSON_free(printed);
				}
			}
			else
				ut->ext_info = response_scalar_text(ext);
			types = lappend(types, ut);
		}
	}
	PG_CATCH();
	{
		cJSON_Delete(root);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cJSON_Delete(root);
	return types;
}
