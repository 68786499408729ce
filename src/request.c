/*-------------------------------------------------------------------------
 *
 * request.c
 *	  Sync jobs: the one or more HTTP requests that deliver one person (or
 *	  one look-up), whatever the service.  The service's descriptor says
 *	  which request comes next (prepare) and what an answer means (judge).
 *
 *	  Every secret a job sends is remembered (secrets.c) before it goes
 *	  out, and every text of an answer is redacted before it becomes the
 *	  job's response, remote_id or error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/timestamp.h"

#include "request_service.h"
#include "pace.h"
#include "secrets.h"

/* check_server()'s hint when no HTTP answer came. */
char *
check_hint_transport(void)
{
	return pstrdup("Check the server's url, that this host can reach it, and TLS: ca_file names the CA that signed the remote's certificate.");
}

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

void
job_finish(SyncJob *job, JobOutcome outcome, char *error)
{
	job->outcome = outcome;
	job->error = error;
	job->elapsed_ms = (GetCurrentTimestamp() - job->started_at) / 1000.0;
}

const char *
bool_param(bool b)
{
	return b ? "true" : "false";
}

/* Bodies are built in the server encoding; the services speak UTF-8. */
char *
job_wire_body(char *body)
{
	if (body == NULL || GetDatabaseEncoding() == PG_UTF8)
		return body;
	return pg_server_to_any(body, strlen(body), PG_UTF8);
}

/*
 * job_start
 *		Starts the request of the job's current step.  The job may end here
 *		without a request (a key the path cannot take, a refused PAT).
 */
void
job_start(SyncJob *job)
{
	JobRequest	req = {"POST", NULL, NULL, NULL, false};
	const ServiceDescriptor *service = job->target->service;
	char	   *wire;

	if (job->started_at == 0)
		job->started_at = GetCurrentTimestamp();

	/* whatever answers may echo it back: redacted from then on */
	secrets_remember(job->secret->value);

	if (!service->prepare(job, &req))
		return;
	wire = req.body_is_wire ? req.body : job_wire_body(req.body);
	if (job->slot_taken)
		job->slot_taken = false;
	else
		pace_take_now(job->target);
	job->transfer = http_transfer_create(job);
	PG_TRY();
	{
		http_start(job->transfer, req.method, req.url, wire, req.header, job->target);
	}
	PG_FINALLY();
	{
		/* each may hold a secret: http_start made its own copies */
		if (req.body)
			explicit_bzero(req.body, strlen(req.body));
		if (wire && wire != req.body)
			explicit_bzero(wire, strlen(wire));
		if (req.header)
			explicit_bzero(req.header, strlen(req.header));
	}
	PG_END_TRY();
}

/*
 * job_http_error
 *		An HTTP answer that is a failure, in the user's terms: what the
 *		service said (its message, else the start of the body, else the
 *		first line of a page), from the redacted body; a redirect's target.
 */
char *
job_http_error(SyncJob *job, const char *what, ResponseInfo *info, const char *location)
{
	const char *service = job->target->service->label;

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
					info->is_json ? response_excerpt(job->response) :
					response_first_line(job->response));
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

	/* a 429's Retry-After holds back every request to the target */
	if (job->http_status == 429 && job->retry_after_s > 0)
		pace_block(job->target, job->retry_after_s);
	response_info_parse(job->response, &info);
	job->target->service->judge(job, &info, location);
}

/* Runs a job to its end in this backend. */
void
job_run(SyncJob *job)
{
	PG_TRY();
	{
		pace_wait(job->target);
		job->slot_taken = true;
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
