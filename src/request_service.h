/*-------------------------------------------------------------------------
 *
 * request_service.h
 *	  What a service's requests (its descriptor's prepare, judge and check)
 *	  work with: the generic job machinery of request.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_REQUEST_SERVICE_H
#define CAMPUS_SYNC_REQUEST_SERVICE_H

#include "postgres.h"

#include "request.h"
#include "response.h"

/* One HTTP request of a job. */
struct JobRequest
{
	const char *method;
	char	   *url;
	char	   *body;			/* NULL: none */
	char	   *header;			/* "Name: value", zeroed once sent; NULL: none */
	bool		body_is_wire;	/* body is UTF-8 already (job_wire_body) */
};

/* What check_server() found for one server. */
struct ServerCheck
{
	bool		ok;
	int			http_status;	/* 0: no HTTP answer */
	char	   *detail;
	char	   *hint;			/* NULL: none */
};

/* for the services */
extern void job_finish(SyncJob *job, JobOutcome outcome, char *error);
extern char *job_http_error(SyncJob *job, const char *what, ResponseInfo *info,
							const char *location);
extern const char *bool_param(bool b);
extern char *job_wire_body(char *body);
extern char *check_hint_transport(void);

#endif							/* CAMPUS_SYNC_REQUEST_SERVICE_H */
