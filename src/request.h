/*-------------------------------------------------------------------------
 *
 * request.h
 *	  A sync job: the one or more HTTP requests that deliver one person (or
 *	  one look-up) to a service, and the classified outcome.  The same code
 *	  serves the synchronous functions (job_run) and the delivery engine,
 *	  which drives many jobs at once (job_start / job_step).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_REQUEST_H
#define CAMPUS_SYNC_REQUEST_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "http.h"
#include "service.h"
#include "target.h"

typedef enum JobKind
{
	JOB_PUSH,					/* create or update the person */
	JOB_LOGIN_LINK,				/* the push, then the person's login link */
	JOB_LOOKUP,					/* the service's read: a person, a list */
	JOB_DISABLE					/* the person is disabled (service->disable_body) */
} JobKind;

typedef enum JobOutcome
{
	JOB_RUNNING,
	JOB_OK,
	JOB_TEMPORARY,				/* worth retrying: transport, 408/425/429/5xx */
	JOB_PERMANENT				/* the remote refused: retrying will not help */
} JobOutcome;

struct SyncJob
{
	JobKind		kind;
	SyncTarget *target;
	TargetSecret *secret;
	const char *payload;		/* body as the service's builder made it */
	const char *person_key;
	void	   *owner;			/* the caller's object */

	int			step;			/* the service's: 0 is the first request */
	char	   *earlier_error;	/* a refusal a later step may report too */
	bool		reauthenticated;
	bool		slot_taken;		/* the next request's pace slot is taken */
	uint64		token_generation;
	HttpTransfer *transfer;
	TimestampTz started_at;

	/* outcome */
	JobOutcome	outcome;
	int			http_status;	/* 0: no HTTP answer */
	bool		transport_error;
	bool		response_cut;	/* the body was cut at HTTP_MAX_RESPONSE */
	char	   *remote_id;
	char	   *response;		/* body, redacted, server encoding */
	char	   *error;
	char	   *login_link;
	double		retry_after_s;	/* -1: none given */
	double		elapsed_ms;
};

extern void job_init(SyncJob *job, JobKind kind, SyncTarget *target,
					 TargetSecret *secret, const char *payload,
					 const char *person_key);
extern void job_start(SyncJob *job);
extern void job_step(SyncJob *job);
extern void job_run(SyncJob *job);
extern bool is_temporary_http_status(int status);

#endif							/* CAMPUS_SYNC_REQUEST_H */
