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
#include "target.h"

typedef enum JobKind
{
	JOB_PUSH,					/* OPS-COM push, CloudCard create-or-update */
	JOB_LOGIN_LINK,				/* CloudCard upsert, then its login link */
	JOB_GET_PERSON,				/* CloudCard GET /person/{key} */
	JOB_USER_TYPES				/* OPS-COM profiles/types/list */
} JobKind;

typedef enum JobOutcome
{
	JOB_RUNNING,
	JOB_OK,
	JOB_TEMPORARY,				/* worth retrying: transport, 408/425/429/5xx */
	JOB_PERMANENT				/* the remote refused: retrying will not help */
} JobOutcome;

/* CloudCard person API: where a job is (see request_cloudcard.c) */
typedef enum JobStep
{
	STEP_FIRST,					/* the update (PUT), or the only request */
	STEP_CREATE,				/* POST after the update's 404 */
	STEP_BY_EMAIL,				/* PUT findBy=email after the create's 400 */
	STEP_LINK,					/* GET .../with-links after the upsert */
	STEP_DEPRECATED_LINK		/* POST /api/people?getLoginLink=true */
} JobStep;

typedef struct SyncJob
{
	JobKind		kind;
	SyncTarget *target;
	TargetSecret *secret;
	const char *payload;		/* body as built by payload.c */
	const char *person_key;
	void	   *owner;			/* the caller's object */

	JobStep		step;
	char	   *refused_create; /* STEP_BY_EMAIL: why the create was refused */
	bool		reauthenticated;
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
} SyncJob;

extern void job_init(SyncJob *job, JobKind kind, SyncTarget *target,
					 TargetSecret *secret, const char *payload,
					 const char *person_key);
extern void job_start(SyncJob *job);
extern void job_step(SyncJob *job);
extern void job_run(SyncJob *job);
extern bool is_temporary_http_status(int status);

#endif							/* CAMPUS_SYNC_REQUEST_H */
