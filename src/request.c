/*-------------------------------------------------------------------------
 *
 * request.c
 *	  The services' protocols: which requests deliver a person, and what
 *	  their answers mean.
 *
 *	  OPS-COM: one POST with apiToken in the body; success only when the
 *	  body says "status": "success" (errors come as ErrorCode bodies, with
 *	  HTTP 200 as far as anyone knows).  CloudCard person API: PUT
 *	  /person/{key}, and on 404 POST /person to create; the deprecated
 *	  people API: one POST /api/people?allowUpdate=true.  A CloudCard 401
 *	  with a session token renews the token and repeats the request once.
 *
 *	  Every secret a job sends is remembered (secrets.c) before it goes
 *	  out, and every text of an answer is redacted before it becomes the
 *	  job's response, remote_id or error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "mb/pg_wchar.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "cloudcard_auth.h"
#include "payload.h"
#include "request.h"
#include "response.h"
#include "secrets.h"

#define OPSCOM_PUSH_PATH "/api/OC_TOMA/v1/profiles/push"
#define OPSCOM_TYPES_PATH "/api/OC_TOMA/v1/profiles/types/list"

bool
is_temporary_http_status(int status)
{
	return status == 408 || status == 425 || status == 429 || status >= 500;
}

void
job_init(SyncJob *job, JobKind kind, SyncTarget *target, TargetSecret *secret,
		 const char *payload, const char *person_key)
{
	memset(job, 0, sizeof(SyncJob));
	job->kind = kind;
	job->target = target;
	job->secret = secret;
	job->payload = payload;
	job->person_key = person_key;
	job->outcome = JOB_RUNNING;
	job->retry_after_s = -1;
}

static void
job_finish(SyncJob *job, JobOutcome outcome, char *error)
{
	job->outcome = outcome;
	job->error = error;
	job->elapsed_ms = (GetCurrentTimestamp() - job->started_at) / 1000.0;
}

static const char *
bool_param(bool b)
{
	return b ? "true" : "false";
}

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

/* Adds a deep copy of item to obj under key; raises when out of memory. */
static void
add_copy(cJSON *obj, const char *key, const cJSON *item)
{
	cJSON	   *copy = cJSON_Duplicate(item, true);

	if (copy == NULL || !cJSON_AddItemToObject(obj, key, copy))
	{
		cJSON_Delete(copy);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not rebuild a CloudCard body.")));
	}
}

/*
 * A CloudCard body with its custom fields either flat (top-level keys, the
 * person API's update) or nested under "customFields" (its create, and the
 * people API).  Custom fields are every key that is not a person field.
 */
static char *
cloudcard_body(const char *payload, bool nested)
{
	/* volatile: assigned in PG_TRY, freed in PG_FINALLY */
	cJSON	   *volatile in = NULL;
	cJSON	   *volatile out = NULL;
	cJSON	   *volatile custom = NULL;
	char	   *volatile printed = NULL;
	char	   *volatile result = NULL;
	const cJSON *item;

	if (!nested && strstr(payload, "\"customFields\":") == NULL)
		return pstrdup(payload);	/* already flat */

	PG_TRY();
	{
		in = cJSON_Parse(payload);
		out = cJSON_CreateObject();
		custom = cJSON_CreateObject();
		if (out == NULL || custom == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not rebuild a CloudCard body.")));
		if (!cJSON_IsObject(in))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("a queued CloudCard body is not a JSON object")));

		cJSON_ArrayForEach(item, in)
		{
			const cJSON *inner;
			bool		is_custom_object = strcmp(item->string, "customFields") == 0 &&
				cJSON_IsObject(item);

			if (is_custom_object)
			{
				cJSON_ArrayForEach(inner, item)
					add_copy(custom, inner->string, inner);
			}
			else if (cloudcard_is_standard_key(item->string))
				add_copy(out, item->string, item);
			else
				add_copy(custom, item->string, item);
		}
		if (nested)
		{
			if (custom->child != NULL)
			{
				if (!cJSON_AddItemToObject(out, "customFields", custom))
					ereport(ERROR,
							(errcode(ERRCODE_OUT_OF_MEMORY),
							 errmsg("out of memory")));
				custom = NULL;
			}
		}
		else
		{
			while (custom->child != NULL)
			{
				cJSON	   *moved = cJSON_DetachItemViaPointer(custom, custom->child);

				if (!cJSON_AddItemToObject(out, moved->string, moved))
				{
					cJSON_Delete(moved);
					ereport(ERROR,
							(errcode(ERRCODE_OUT_OF_MEMORY),
							 errmsg("out of memory")));
				}
			}
		}
		printed = cJSON_PrintUnformatted(out);
		if (printed == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		result = pstrdup(printed);
	}
	PG_FINALLY();
	{
		cJSON_Delete(in);
		cJSON_Delete(out);
		cJSON_Delete(custom);
		if (printed)
			cJSON_free(printed);
	}
	PG_END_TRY();
	return result;
}

/* Bodies are built in the server encoding; the services speak UTF-8. */
static char *
to_wire(char *body)
{
	if (body == NULL || GetDatabaseEncoding() == PG_UTF8)
		return body;
	return pg_server_to_any(body, strlen(body), PG_UTF8);
}

/* The key in the path is percent-encoded UTF-8, like the body. */
static char *
person_url(SyncJob *job)
{
	const char *key = job->person_key;

	if (GetDatabaseEncoding() != PG_UTF8)
		key = pg_server_to_any(key, strlen(key), PG_UTF8);
	return psprintf("%s/person/%s?findBy=%s", job->target->url, http_path_escape(key),
					job->target->find_by_email ? "email" : "identifier");
}

/*
 * job_start
 *		Starts the request of the job's current step.  The job may end here
 *		without a request (CloudCard refused the PAT exchange).
 */
void
job_start(SyncJob *job)
{
	SyncTarget *target = job->target;
	const char *method = "POST";
	const char *auth_token = NULL;
	char	   *url;
	char	   *body = NULL;

	if (job->started_at == 0)
		job->started_at = GetCurrentTimestamp();

	/* whatever answers may echo it back: redacted from then on */
	secrets_remember(job->secret->value);

	if (target->service == SERVICE_CLOUDCARD)
	{
		AuthFailure failure;
		PayloadError *key_error;

		/*
		 * Payloads refuse keys the path would misread; an item queued before
		 * they did (0.1) is refused here, before any request.
		 */
		if (job->person_key &&
			(key_error = cloudcard_key_error(target->find_by_email, job->person_key, NULL)) != NULL)
		{
			job_finish(job, JOB_PERMANENT,
					   psprintf("not sent: %s", payload_error_text(key_error)));
			return;
		}

		/*
		 * Points into the token cache, which a renewal may free: used here
		 * only, http_start copies it.
		 */
		auth_token = cloudcard_session_token(target, job->secret,
											 &job->token_generation, &failure);
		if (auth_token == NULL)
		{
			job->http_status = failure.http_status;
			job->transport_error = failure.http_status == 0;
			job->retry_after_s = failure.retry_after_s;
			job_finish(job, failure.temporary ? JOB_TEMPORARY : JOB_PERMANENT,
					   failure.error);
			return;
		}
	}

	switch (job->kind)
	{
		case JOB_PUSH:
			if (target->service == SERVICE_OPSCOM)
			{
				url = psprintf("%s%s", target->url, OPSCOM_PUSH_PATH);
				body = opscom_body(job->payload, job->secret->value);
			}
			else if (target->api_people)
			{
				url = psprintf("%s/api/people?allowUpdate=true&sendInvitation=%s",
							   target->url, bool_param(target->send_invitation));
				body = cloudcard_body(job->payload, true);
			}
			else if (job->step == STEP_FIRST)
			{
				method = "PUT";
				url = psprintf("%s&updateRoles=%s", person_url(job),
							   bool_param(target->update_roles));
				body = cloudcard_body(job->payload, false);
			}
			else
			{
				url = psprintf("%s/person?sendInvitation=%s", target->url,
							   bool_param(target->send_invitation));
				body = cloudcard_body(job->payload, true);
			}
			break;
		case JOB_LOGIN_LINK:
			url = psprintf("%s/api/people?allowUpdate=true&getLoginLink=true&sendInvitation=%s",
						   target->url, bool_param(target->send_invitation));
			body = cloudcard_body(job->payload, true);
			break;
		case JOB_GET_PERSON:
			method = "GET";
			url = person_url(job);
			break;
		case JOB_USER_TYPES:
			url = psprintf("%s%s", target->url, OPSCOM_TYPES_PATH);
			body = opscom_body(NULL, job->secret->value);
			break;
		default:
			elog(ERROR, "unknown job kind %d", (int) job->kind);
	}

	job->transfer = http_transfer_create(job);
	http_start(job->transfer, method, url, to_wire(body), auth_token, target);
	if (body)
		explicit_bzero(body, strlen(body));
}

/*
 * An HTTP answer that is a failure, in the user's terms.  The message and
 * the excerpt come from the redacted body, the location from http_location.
 */
static char *
http_error(SyncJob *job, const char *what, ResponseInfo *info, const char *location)
{
	const char *service = job->target->service == SERVICE_OPSCOM ? "OPS-COM" : "CloudCard";

	if (location)
		return psprintf("%s answered HTTP %d%s with a redirect to %s, which is not followed; set the server's url to the final address",
						service, job->http_status, what, location);
	if (job->response_cut)
		return psprintf("%s answered HTTP %d%s: the answer was larger than %d bytes and was cut: %s",
						service, job->http_status, what, HTTP_MAX_RESPONSE,
						response_excerpt(job->response));
	if (info->message)
		return psprintf("%s answered HTTP %d%s: %s", service, job->http_status, what,
						info->message);
	return psprintf("%s answered HTTP %d%s: %s", service, job->http_status, what,
					response_excerpt(job->response));
}

/*
 * OPS-COM: success is a 2xx whose body says "status": "success".  A 2xx
 * body cut at HTTP_MAX_RESPONSE cannot say so: the push may have been
 * applied, but it is not known to be, and repeating it would get the same
 * oversized answer; it fails, and is not retried.
 */
static void
opscom_outcome(SyncJob *job, ResponseInfo *info, const char *location)
{
	if (is_temporary_http_status(job->http_status))
		job_finish(job, JOB_TEMPORARY, http_error(job, "", info, NULL));
	else if (job->response_cut && job->http_status >= 200 && job->http_status < 300)
		job_finish(job, JOB_PERMANENT,
				   psprintf("the answer (HTTP %d) was larger than %d bytes and was cut, so OPS-COM's \"status\": \"success\" could not be read; not retried: %s",
							job->http_status, HTTP_MAX_RESPONSE,
							response_excerpt(job->response)));
	else if (job->http_status >= 200 && job->http_status < 300 &&
			 info->status && strcmp(info->status, "success") == 0)
	{
		job->remote_id = info->reference_id;
		job_finish(job, JOB_OK, NULL);
	}
	else if (info->error_code)
		job_finish(job, JOB_PERMANENT,
				   psprintf("OPS-COM error %s: %s", info->error_code,
							info->error_message ? info->error_message : "(no message)"));
	else if (job->http_status >= 200 && job->http_status < 300)
		job_finish(job, JOB_PERMANENT,
				   psprintf("OPS-COM did not answer \"status\": \"success\": %s",
							response_excerpt(job->response)));
	else
		job_finish(job, JOB_PERMANENT, http_error(job, "", info, location));
}

/*
 * CloudCard: the HTTP status decides, so a 2xx is success whatever its
 * body, even one cut at HTTP_MAX_RESPONSE (then without remote_id).  What
 * needs the body (a login link, a person looked up) fails when it is cut.
 */
static void
cloudcard_outcome(SyncJob *job, ResponseInfo *info, const char *location)
{
	int			status = job->http_status;
	const char *what = job->step == STEP_CREATE ? " to the create (POST /person)" : "";

	/* a session token CloudCard no longer takes: renew it, once */
	if (status == 401 && job->secret->kind == SECRET_CLOUDCARD_PAT &&
		!job->reauthenticated)
	{
		cloudcard_token_invalidate(job->secret, job->token_generation);
		job->reauthenticated = true;
		job_start(job);
		return;
	}

	if (status >= 200 && status < 300)
	{
		job->remote_id = info->id;
		if (job->response_cut && job->kind != JOB_PUSH)
			job_finish(job, JOB_PERMANENT,
					   psprintf("the answer (HTTP %d) was larger than %d bytes and was cut",
								status, HTTP_MAX_RESPONSE));
		else if (job->kind == JOB_LOGIN_LINK && info->login_link == NULL)
			job_finish(job, JOB_PERMANENT,
					   psprintf("CloudCard's answer has no links.login: %s",
								response_excerpt(job->response)));
		else
		{
			job->login_link = info->login_link;
			job_finish(job, JOB_OK, NULL);
		}
	}
	else if (status == 404 && job->kind == JOB_GET_PERSON)
		job_finish(job, JOB_OK, NULL);
	else if (status == 404 && job->kind == JOB_PUSH && !job->target->api_people &&
			 job->step == STEP_FIRST)
	{
		job->step = STEP_CREATE;
		job_start(job);
	}
	else if (is_temporary_http_status(status))
		job_finish(job, JOB_TEMPORARY, http_error(job, what, info, NULL));
	else
		job_finish(job, JOB_PERMANENT, http_error(job, what, info, location));
}

/*
 * job_step
 *		Reads the answer of the job's finished transfer: the job ends, or
 *		its next request starts.
 */
void
job_step(SyncJob *job)
{
	HttpTransfer *t = job->transfer;
	ResponseInfo info;
	char	   *location;

	Assert(t != NULL && t->done);
	job->transfer = NULL;
	job->http_status = (int) t->status;
	job->retry_after_s = t->retry_after_s;
	job->response_cut = t->response_too_large;
	job->transport_error = t->result != CURLE_OK && !job->response_cut;
	if (job->transport_error)
	{
		char	   *error = http_transport_error(t, job->target);

		http_transfer_free(t);
		job->response = NULL;
		job_finish(job, JOB_TEMPORARY, error);
		return;
	}
	job->response = response_text(t->response, t->response_len, job->response_cut);
	location = http_location(t);
	http_transfer_free(t);

	response_info_parse(job->response, &info);
	if (job->target->service == SERVICE_OPSCOM)
		opscom_outcome(job, &info, location);
	else
		cloudcard_outcome(job, &info, location);
}

/* Runs a job to its end in this backend. */
void
job_run(SyncJob *job)
{
	PG_TRY();
	{
		job_start(job);
		while (job->outcome == JOB_RUNNING)
		{
			http_wait_for(job->transfer);
			job_step(job);
		}
	}
	PG_CATCH();
	{
		if (job->transfer)
			http_transfer_free(job->transfer);
		job->transfer = NULL;
		PG_RE_THROW();
	}
	PG_END_TRY();
}
