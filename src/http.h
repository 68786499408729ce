/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The HTTP client: libcurl transfers on one multi handle per backend,
 *	  whose connection cache keeps connections alive between calls.
 *
 *	  A transfer and everything it points to is malloc'd and registered,
 *	  so that an ERROR that interrupts a request can free it (and the
 *	  transaction-abort callback frees anything that escaped).  Response
 *	  bodies are capped; redirects are never followed; compressed answers
 *	  are never inflated.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_HTTP_H
#define CAMPUS_SYNC_HTTP_H

#include "postgres.h"

#include <curl/curl.h>

#include "lib/ilist.h"

#include "target.h"

/*
 * Largest response body kept: reading stops there, the status stays known
 * and response_too_large is set.
 */
#define HTTP_MAX_RESPONSE (4 * 1024 * 1024)

typedef struct HttpTransfer
{
	dlist_node	node;			/* in the list of all transfers */
	dlist_node	done_node;		/* in the list of completed, unclaimed ones */
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *url;
	char	   *body;
	bool		active;			/* added to the multi handle */
	bool		done;
	void	   *owner;			/* the caller's object */

	/* outcome */
	CURLcode	result;
	long		status;			/* 0 when no HTTP response arrived */
	char		errbuf[CURL_ERROR_SIZE];
	char	   *response;		/* NUL-terminated, malloc'd; may be NULL */
	size_t		response_len;
	size_t		response_cap;
	bool		response_too_large;
	double		retry_after_s;	/* Retry-After in seconds, or -1 */
	char	   *location;		/* where a 3xx answer pointed (not followed) */
	double		elapsed_ms;
} HttpTransfer;

extern void http_init(void);
extern HttpTransfer *http_transfer_create(void *owner);
extern void http_start(HttpTransfer *t, const char *method, const char *url,
					   const char *body, const char *header,
					   SyncTarget *target);
extern int	http_wait(int timeout_ms);
extern HttpTransfer *http_next_done(void);
extern void http_wait_for(HttpTransfer *t);
extern void http_execute(HttpTransfer *t, const char *method, const char *url,
						 const char *body, const char *header,
						 SyncTarget *target);
extern void http_transfer_free(HttpTransfer *t);
extern void http_free_all(void);
extern char *http_transport_error(HttpTransfer *t, SyncTarget *target);
extern char *http_cut_error(HttpTransfer *t);
extern char *http_location(HttpTransfer *t);
extern char *http_path_escape(const char *s);

#endif							/* CAMPUS_SYNC_HTTP_H */
