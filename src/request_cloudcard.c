/*-------------------------------------------------------------------------
 *
 * request_cloudcard.c
 *	  The CloudCard person API as a job, as CloudCard's own importers use
 *	  it.  A person is updated with PUT /person/{key}?findBy=..., created
 *	  with POST /person?renderResource=true when the update answers 404
 *	  (without renderResource the create answers with no body, and no id);
 *	  when the create answers 400 because CloudCard knows the person by
 *	  email only (an office user created it, without an identifier), the
 *	  row's email updates it: PUT /person/{email}?findBy=email, which also
 *	  sets the identifier.  A login link is read after the upsert from GET
 *	  /people/{key}/with-links; only where that endpoint is missing is the
 *	  deprecated POST /api/people?getLoginLink=true used.  Servers with api
 *	  'people' send the deprecated POST /api/people?allowUpdate=true.
 *
 *	  A session token that CloudCard refuses (401, or 403 as it may say)
 *	  is renewed and the request repeated, once.
 *
 *	  Paths hang off the server's url without a trailing "/api" (target.c
 *	  drops it): /person, /people, /authentication-token; the deprecated
 *	  endpoint is /api/people.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "mb/pg_wchar.h"

#include "cloudcard.h"
#include "cloudcard_auth.h"

/* Where a job is in the person API's requests. */
typedef enum CloudcardStep
{
	STEP_FIRST,					/* the update (PUT), or the only request */
	STEP_CREATE,				/* POST after the update's 404 */
	STEP_BY_EMAIL,				/* PUT findBy=email after the create's 400 */
	STEP_LINK,					/* GET .../with-links after the upsert */
	STEP_DEPRECATED_LINK		/* POST /api/people?getLoginLink=true */
} CloudcardStep;

/* The header that authenticates a request: palloc'd, the caller zeroes it. */
char *
cloudcard_auth_header(const char *token)
{
	return psprintf("X-Auth-Token: %s", token);
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
 * people API).  payload_cloudcard.c nests them; an item queued by 0.4 or
 * before, for api 'person', has them flat: custom fields are every key
 * that is not a person field.
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

/* A key as a path segment: percent-encoded UTF-8, like the body. */
static char *
path_key(const char *key)
{
	if (GetDatabaseEncoding() != PG_UTF8)
		key = pg_server_to_any(key, strlen(key), PG_UTF8);
	return http_path_escape(key);
}

static const char *
find_by(SyncJob *job)
{
	return cloudcard_options(job->target)->find_by_email ? "email" : "identifier";
}

/*
 * The email of the row (to update a person CloudCard knows by email only),
 * or NULL when it has none that can be a key.
 */
static char *
payload_email(const char *payload)
{
	cJSON	   *root = cJSON_Parse(payload);
	const cJSON *email;
	char	   *result = NULL;

	if (root == NULL)
		return NULL;
	/* copied before any palloc that could raise with root still allocated */
	PG_TRY();
	{
		email = cJSON_GetObjectItemCaseSensitive(root, "email");
		if (cJSON_IsString(email) && email->valuestring[0] != '\0')
			result = pstrdup(email->valuestring);
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
	if (result && cloudcard_key_error(true, result, NULL) != NULL)
		result = NULL;
	return result;
}

/* Does this job send the deprecated people API's POST now? */
static bool
deprecated_step(SyncJob *job)
{
	return (cloudcard_options(job->target)->api_people &&
			(job->kind == JOB_PUSH || job->kind == JOB_LOGIN_LINK)) ||
		job->step == STEP_DEPRECATED_LINK;
}

/* What the current step's request is, for messages. */
static const char *
step_name(SyncJob *job)
{
	if (deprecated_step(job))
		return " to the deprecated people API (POST /api/people)";
	switch (job->step)
	{
		case STEP_CREATE:
			return " to the create (POST /person)";
		case STEP_BY_EMAIL:
			return " to the update by email (PUT /person/{email}?findBy=email)";
		case STEP_LINK:
			return " to the login link look-up (GET /people/{key}/with-links)";
		default:
			return "";
	}
}

static void
request_for_step(SyncJob *job, JobRequest *req)
{
	SyncTarget *target = job->target;
	CloudcardOptions *options = cloudcard_options(target);
	const char *base = target->url;

	if (deprecated_step(job))
	{
		req->url = psprintf("%s/api/people?allowUpdate=true%s&sendInvitation=%s", base,
							job->kind == JOB_LOGIN_LINK ? "&getLoginLink=true" : "",
							bool_param(options->send_invitation));
		req->body = cloudcard_body(job->payload, true);
		return;
	}
	if (job->kind == JOB_LOOKUP)
	{
		req->method = "GET";
		req->url = psprintf("%s/person/%s?findBy=%s", base, path_key(job->person_key),
							find_by(job));
		return;
	}
	if (job->kind == JOB_DISABLE)
	{
		/* the person API, whatever api says: its roles are left as they are */
		req->method = "PUT";
		req->url = psprintf("%s/person/%s?findBy=%s&updateRoles=false", base,
							path_key(job->person_key), find_by(job));
		req->body = pstrdup(job->payload);
		return;
	}
	switch (job->step)
	{
		case STEP_FIRST:
			req->method = "PUT";
			req->url = psprintf("%s/person/%s?findBy=%s&updateRoles=%s", base,
								path_key(job->person_key), find_by(job),
								bool_param(options->update_roles));
			req->body = cloudcard_body(job->payload, false);
			break;
		case STEP_CREATE:
			req->url = psprintf("%s/person?sendInvitation=%s&renderResource=true", base,
								bool_param(options->send_invitation));
			req->body = cloudcard_body(job->payload, true);
			break;
		case STEP_BY_EMAIL:
			req->method = "PUT";
			req->url = psprintf("%s/person/%s?findBy=email&updateRoles=%s", base,
								path_key(payload_email(job->payload)),
								bool_param(options->update_roles));
			req->body = cloudcard_body(job->payload, false);
			break;
		case STEP_LINK:
			req->method = "GET";
			req->url = psprintf("%s/people/%s/with-links?findBy=%s", base,
								path_key(job->person_key), find_by(job));
			break;
		case STEP_DEPRECATED_LINK:
			Assert(false);		/* deprecated_step() */
			break;
	}
}

bool
cloudcard_prepare(SyncJob *job, JobRequest *req)
{
	AuthFailure failure;
	const char *token;
	PayloadError *key_error;

	/*
	 * Payloads refuse keys the path would misread; an item queued before
	 * they did (0.1) is refused here, before any request.
	 */
	if (job->person_key &&
		(key_error = cloudcard_key_error(cloudcard_options(job->target)->find_by_email,
										 job->person_key, NULL)) != NULL)
	{
		job_finish(job, JOB_PERMANENT, psprintf("not sent: %s", payload_error_text(key_error)));
		return false;
	}

	/*
	 * Points into the token cache, which a renewal may free: used here
	 * only, copied into the header.
	 */
	token = cloudcard_session_token(job->target, job->secret,
									&job->token_generation, &failure);
	if (token == NULL)
	{
		job->http_status = failure.http_status;
		job->transport_error = failure.http_status == 0;
		job->retry_after_s = failure.retry_after_s;
		job_finish(job, failure.temporary ? JOB_TEMPORARY : JOB_PERMANENT, failure.error);
		return false;
	}
	req->header = cloudcard_auth_header(token);
	request_for_step(job, req);
	return true;
}

static void
next_step(SyncJob *job, CloudcardStep step)
{
	job->step = step;
	job_start(job);
}

/* A 2xx: done, or (a login link) the link is read next. */
static void
succeeded(SyncJob *job, ResponseInfo *info)
{
	bool		link_step = job->step == STEP_LINK || deprecated_step(job);

	if (job->kind == JOB_LOGIN_LINK && !link_step)
	{
		next_step(job, STEP_LINK);
		return;
	}
	/* a push's answer is not needed: success even when cut (no remote_id) */
	if (job->kind == JOB_PUSH || job->kind == JOB_DISABLE)
		job->remote_id = info->id;
	if (job->response_cut && job->kind != JOB_PUSH && job->kind != JOB_DISABLE)
		job_finish(job, JOB_PERMANENT,
				   psprintf("the answer (HTTP %d)%s was larger than %d bytes and was cut",
							job->http_status, step_name(job), HTTP_MAX_RESPONSE));
	else if (job->kind == JOB_LOGIN_LINK && info->login_link == NULL)
		job_finish(job, JOB_PERMANENT,
				   psprintf("CloudCard's answer%s has no links.login: %s",
							step_name(job), response_excerpt(job->response)));
	else
	{
		job->login_link = info->login_link;
		job_finish(job, JOB_OK, NULL);
	}
}

/* CloudCard refused the deprecated endpoint (switched off for the organisation). */
static void
deprecated_refused(SyncJob *job)
{
	if (job->kind == JOB_LOGIN_LINK && !cloudcard_options(job->target)->api_people)
		job_finish(job, JOB_PERMANENT,
				   psprintf("CloudCard has no login link endpoint (GET /people/{key}/with-links answered 404) and refused the deprecated POST /api/people?getLoginLink=true (HTTP %d): the organisation has switched deprecated endpoints off",
							job->http_status));
	else
		job_finish(job, JOB_PERMANENT,
				   psprintf("CloudCard refused the deprecated people API for this organisation (POST /api/people answered HTTP %d); use api 'person', the default: ALTER SERVER %s OPTIONS (DROP api)",
							job->http_status, job->target->server_name));
}

/*
 * The HTTP status decides, so a 2xx is success whatever its body.  What
 * needs the body (a login link, a person looked up) fails when it is cut.
 */
void
cloudcard_judge(SyncJob *job, ResponseInfo *info, const char *location)
{
	int			status = job->http_status;
	JobOutcome	failed = is_temporary_http_status(status) ? JOB_TEMPORARY : JOB_PERMANENT;
	char	   *error;

	/* a session token CloudCard no longer takes: renew it, once */
	if ((status == 401 || status == 403) && cloudcard_uses_pat(job->secret) &&
		!job->reauthenticated)
	{
		cloudcard_token_invalidate(job->secret, job->token_generation);
		job->reauthenticated = true;
		job_start(job);
		return;
	}

	if (status >= 200 && status < 300)
		succeeded(job, info);
	else if (status == 404 && (job->kind == JOB_LOOKUP || job->kind == JOB_DISABLE))
		job_finish(job, JOB_OK, NULL);	/* no such person: nothing to disable either */
	else if ((status == 403 || status == 404) && deprecated_step(job))
		deprecated_refused(job);
	else if (status == 404 && job->step == STEP_FIRST)
		next_step(job, STEP_CREATE);
	else if (status == 404 && job->step == STEP_LINK)
		next_step(job, STEP_DEPRECATED_LINK);	/* no such endpoint here */
	else if (status == 400 && job->step == STEP_CREATE &&
			 !cloudcard_options(job->target)->find_by_email &&
			 payload_email(job->payload) != NULL)
	{
		/* known by email only: update it by email, as CloudCard's importer does */
		job->earlier_error = job_http_error(job, step_name(job), info, NULL);
		next_step(job, STEP_BY_EMAIL);
	}
	else
	{
		error = job_http_error(job, step_name(job), info,
							   failed == JOB_TEMPORARY ? NULL : location);
		if (job->step == STEP_BY_EMAIL)
			error = psprintf("%s; then %s", job->earlier_error, error);
		job_finish(job, failed, error);
	}
}
