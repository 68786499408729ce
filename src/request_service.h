/*-------------------------------------------------------------------------
 *
 * request_service.h
 *	  What each service's protocol gives the generic job machinery
 *	  (request.c): the next request of a job, and what an answer means.
 *	  request_opscom.c and request_cloudcard.c implement it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_REQUEST_SERVICE_H
#define CAMPUS_SYNC_REQUEST_SERVICE_H

#include "postgres.h"

#include "request.h"
#include "response.h"

/* One HTTP request of a job. */
typedef struct JobRequest
{
	const char *method;
	char	   *url;
	char	   *body;			/* NULL: none */
	const char *auth_token;		/* X-Auth-Token; NULL: none */
} JobRequest;

/* What check_server() found for one server. */
typedef struct ServerCheck
{
	bool		ok;
	int			http_status;	/* 0: no HTTP answer */
	char	   *detail;
	char	   *hint;			/* NULL: none */
} ServerCheck;

typedef struct ServiceProtocol
{
	const char *name;			/* as messages say it: "OPS-COM" */

	/*
	 * Fills the job's next request; false when the job ended without one
	 * (job_finish was called).
	 */
	bool		(*prepare) (SyncJob *job, JobRequest *req);

	/*
	 * Reads a finished request's answer: ends the job (job_finish) or
	 * moves it to its next step (job_start).
	 */
	void		(*judge) (SyncJob *job, ResponseInfo *info, const char *location);

	/*
	 * Proves that the url answers, TLS verifies and the credentials are
	 * accepted, changing nothing at the remote (check_server()).
	 */
	void		(*check) (SyncTarget *target, TargetSecret *secret, ServerCheck *out);
} ServiceProtocol;

extern const ServiceProtocol opscom_protocol;
extern const ServiceProtocol cloudcard_protocol;

extern const ServiceProtocol *service_protocol(ServiceKind service);

/* for the protocols */
extern void job_finish(SyncJob *job, JobOutcome outcome, char *error);
extern char *job_http_error(SyncJob *job, const char *what, ResponseInfo *info,
							const char *location);
extern const char *bool_param(bool b);
extern char *check_hint_transport(void);

#endif							/* CAMPUS_SYNC_REQUEST_SERVICE_H */
