/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl transfers for campus_sync: one multi handle per backend (its
 *	  connection cache is what keeps connections alive between calls), a
 *	  small pool of easy handles, interruptible waits.
 *
 *	  Nothing here may ereport from inside a libcurl callback: a longjmp
 *	  through libcurl would corrupt it.  Callbacks only use malloc and
 *	  report failure through their return value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/ipc.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/pmsignal.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "http.h"
#include "secrets.h"

/* curl_multi_poll() and CURLOPT_PROTOCOLS_STR's predecessor checks */
#if LIBCURL_VERSION_NUM < 0x074200
#error "campus_sync needs libcurl 7.66.0 or newer"
#endif

#ifndef EXTVERSION
#define EXTVERSION "unknown"
#endif

#define USER_AGENT "campus_sync/" EXTVERSION
#define EASY_POOL_SIZE 64
#define MULTI_MAX_CONNECTS 256

static CURLM *multi = NULL;
static CURL *easy_pool[EASY_POOL_SIZE];
static int	easy_pool_len = 0;
static dlist_head all_transfers = DLIST_STATIC_INIT(all_transfers);
static dlist_head done_transfers = DLIST_STATIC_INIT(done_transfers);

static void http_xact_callback(XactEvent event, void *arg);

void
http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	RegisterXactCallback(http_xact_callback, NULL);
}

/* Anything still registered at abort was interrupted by an ERROR. */
static void
http_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		http_free_all();
}

static CURLM *
get_multi(void)
{
	if (multi == NULL)
	{
		multi = curl_multi_init();
		if (multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a libcurl multi handle.")));
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) MULTI_MAX_CONNECTS);
	}
	return multi;
}

static CURL *
easy_get(void)
{
	CURL	   *easy;

	if (easy_pool_len > 0)
	{
		easy = easy_pool[--easy_pool_len];
		curl_easy_reset(easy);
		return easy;
	}
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a libcurl easy handle.")));
	return easy;
}

static void
easy_put(CURL *easy)
{
	if (easy_pool_len < EASY_POOL_SIZE)
		easy_pool[easy_pool_len++] = easy;
	else
		curl_easy_cleanup(easy);
}

/* Takes a transfer off the done list, if it is on it. */
static void
done_list_remove(HttpTransfer *t)
{
	if (t->done_node.next != NULL)
	{
		dlist_delete(&t->done_node);
		t->done_node.next = t->done_node.prev = NULL;
	}
}

HttpTransfer *
http_transfer_create(void *owner)
{
	HttpTransfer *t = calloc(1, sizeof(HttpTransfer));

	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	t->owner = owner;
	t->retry_after_s = -1;
	dlist_push_tail(&all_transfers, &t->node);
	return t;
}

/* Releases the curl side of a transfer; its outcome stays readable. */
static void
transfer_detach(HttpTransfer *t)
{
	if (t->active)
	{
		curl_multi_remove_handle(multi, t->easy);
		t->active = false;
	}
	if (t->easy)
	{
		easy_put(t->easy);
		t->easy = NULL;
	}
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	free(t->url);
	t->url = NULL;
	if (t->body)
	{
		/* request bodies carry OPS-COM's apiToken or a CloudCard PAT */
		explicit_bzero(t->body, strlen(t->body));
		free(t->body);
		t->body = NULL;
	}
}

void
http_transfer_free(HttpTransfer *t)
{
	if (t == NULL)
		return;
	transfer_detach(t);
	done_list_remove(t);
	dlist_delete(&t->node);
	free(t->response);
	free(t->location);
	free(t);
}

void
http_free_all(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &all_transfers)
		http_transfer_free(dlist_container(HttpTransfer, node, iter.cur));
}

/*
 * Keeps the body up to HTTP_MAX_RESPONSE bytes.  Past that it keeps what
 * fits and stops the transfer: an endless body costs at most the cap.
 */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpTransfer *t = arg;
	size_t		n = size * nmemb;
	size_t		keep = n;

	if (t->response_len + n > HTTP_MAX_RESPONSE)
	{
		t->response_too_large = true;
		keep = HTTP_MAX_RESPONSE - t->response_len;
	}
	if (t->response_len + keep + 1 > t->response_cap)
	{
		size_t		cap = Max(t->response_cap * 2, 4096);
		char	   *grown;

		while (cap < t->response_len + keep + 1)
			cap *= 2;
		cap = Min(cap, (size_t) HTTP_MAX_RESPONSE + 1);
		grown = realloc(t->response, cap);
		if (grown == NULL)
			return 0;
		t->response = grown;
		t->response_cap = cap;
	}
	memcpy(t->response + t->response_len, data, keep);
	t->response_len += keep;
	t->response[t->response_len] = '\0';
	return t->response_too_large ? 0 : n;	/* 0 aborts the transfer */
}

/* Retry-After: delta-seconds or an HTTP-date (RFC 9110 10.2.3). */
static double
parse_retry_after(const char *value)
{
	char	   *end;
	long		seconds = strtol(value, &end, 10);
	time_t		when;

	while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
		end++;
	if (end != value && *end == '\0')
		return seconds < 0 ? 0 : (double) seconds;
	when = curl_getdate(value, NULL);
	if (when == -1)
		return -1;
	return when > time(NULL) ? (double) (when - time(NULL)) : 0;
}

static size_t
header_callback(char *data, size_t size, size_t nitems, void *arg)
{
	HttpTransfer *t = arg;
	size_t		n = size * nitems;
	static const char name[] = "retry-after:";

	/* a new status line: headers of an earlier (1xx) response no longer count */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		t->retry_after_s = -1;
	else if (n > sizeof(name) - 1 && pg_strncasecmp(data, name, sizeof(name) - 1) == 0)
	{
		char		value[128];
		size_t		len = Min(n - (sizeof(name) - 1), sizeof(value) - 1);
		char	   *p = value;

		memcpy(value, data + sizeof(name) - 1, len);
		value[len] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		t->retry_after_s = parse_retry_after(p);
	}
	return n;
}

static char *
strdup_or_error(const char *s)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return copy;
}

static void
append_header(HttpTransfer *t, const char *header)
{
	struct curl_slist *list = curl_slist_append(t->headers, header);

	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	t->headers = list;
}

static void
check_setopt(CURLcode rc, const char *what)
{
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not prepare the HTTP request: %s", what),
				 errdetail_internal("%s", curl_easy_strerror(rc))));
}

/*
 * http_start
 *		Prepares a request and adds it to the multi handle.  body may be
 *		NULL (GET); header is one more header line ("Name: value", may be
 *		a secret: the service's credentials) or NULL.  On ERROR the transfer stays registered; the caller's
 *		cleanup (or the abort callback) frees it.
 */
void
http_start(HttpTransfer *t, const char *method, const char *url,
		   const char *body, const char *header, SyncTarget *target)
{
	CURL	   *e;
	CURLMcode	mrc;

	Assert(!t->active);
	transfer_detach(t);
	free(t->response);
	t->response = NULL;
	t->response_len = t->response_cap = 0;
	t->response_too_large = false;
	t->done = false;
	t->status = 0;
	t->result = CURLE_OK;
	t->errbuf[0] = '\0';
	t->retry_after_s = -1;
	t->elapsed_ms = 0;
	free(t->location);
	t->location = NULL;

	t->easy = e = easy_get();
	t->url = strdup_or_error(url);
	if (body)
		t->body = strdup_or_error(body);

	append_header(t, "Accept: application/json");
	if (body)
		append_header(t, "Content-Type: application/json");
	append_header(t, "Expect:");	/* no 100-continue round trip */
	if (header)
		append_header(t, header);

	check_setopt(curl_easy_setopt(e, CURLOPT_URL, t->url), "url");
#if LIBCURL_VERSION_NUM >= 0x075500
	check_setopt(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols");
#else
	check_setopt(curl_easy_setopt(e, CURLOPT_PROTOCOLS,
								  (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)), "protocols");
#endif
	check_setopt(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L), "redirects");
	/* never inflate a compressed answer (a gzip bomb); none is asked for */
	check_setopt(curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L), "decoding");
	check_setopt(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L), "nosignal");
	check_setopt(curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT), "user agent");
	check_setopt(curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers), "headers");
	check_setopt(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
								  (long) target->connect_timeout_ms), "connect_timeout_ms");
	check_setopt(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) target->timeout_ms),
				 "timeout_ms");
	check_setopt(curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, target->verify_tls ? 1L : 0L),
				 "verify_tls");
	check_setopt(curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, target->verify_tls ? 2L : 0L),
				 "verify_tls");
	if (target->ca_file)
		check_setopt(curl_easy_setopt(e, CURLOPT_CAINFO, target->ca_file), "ca_file");
	check_setopt(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_callback), "write");
	check_setopt(curl_easy_setopt(e, CURLOPT_WRITEDATA, t), "write");
	check_setopt(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_callback), "header");
	check_setopt(curl_easy_setopt(e, CURLOPT_HEADERDATA, t), "header");
	check_setopt(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf), "errors");
	check_setopt(curl_easy_setopt(e, CURLOPT_PRIVATE, t), "private");

	if (strcmp(method, "GET") == 0)
		check_setopt(curl_easy_setopt(e, CURLOPT_HTTPGET, 1L), "method");
	else
	{
		check_setopt(curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body ? t->body : ""), "body");
		check_setopt(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
									  (long) (t->body ? strlen(t->body) : 0)), "body");
		if (strcmp(method, "POST") != 0)
			check_setopt(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method), "method");
	}

	mrc = curl_multi_add_handle(get_multi(), e);
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start the HTTP request"),
				 errdetail_internal("%s", curl_multi_strerror(mrc))));
	t->active = true;
}

/* Moves finished transfers to the done list; returns how many. */
static int
collect_done(void)
{
	CURLMsg    *msg;
	int			left;
	int			n = 0;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		HttpTransfer *t;
		curl_off_t	total_us = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		t->result = msg->data.result;
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
		curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
		t->elapsed_ms = total_us / 1000.0;
		/* a body cut at the cap is still an answer: its status counts */
		if (t->result != CURLE_OK && !t->response_too_large)
			t->status = 0;
		else if (t->status >= 300 && t->status < 400)
		{
			char	   *location = NULL;

			curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &location);
			if (location)
				t->location = strdup(location);
		}
		transfer_detach(t);
		t->done = true;
		dlist_push_tail(&done_transfers, &t->done_node);
		n++;
	}
	return n;
}

static void
check_multi(CURLMcode rc)
{
	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("HTTP client failure"),
				 errdetail_internal("%s", curl_multi_strerror(rc))));
}

/*
 * http_wait
 *		Lets the transfers progress, waiting up to timeout_ms for one to
 *		finish.  Returns the number that finished (see http_next_done).
 *		A signal (query cancel) ends the wait early; postmaster death ends
 *		the process.
 */
/* waiting for the remote's answers (its name in pg_stat_activity from 17) */
static uint32 remote_wait_event = 0;

int
http_wait(int timeout_ms)
{
	int			running;
	int			n;

	if (multi == NULL)
		return 0;
	check_multi(curl_multi_perform(multi, &running));
	n = collect_done();
	if (n == 0 && running > 0 && timeout_ms > 0)
	{
		pgstat_report_wait_start(cs_wait_event(&remote_wait_event, "CampusSyncRemote"));
		check_multi(curl_multi_poll(multi, NULL, 0, timeout_ms, NULL));
		pgstat_report_wait_end();
		/* the worker, or a long deliver(), must not outlive the server */
		if (!proc_exit_inprogress && !PostmasterIsAlive())
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating campus_sync requests in flight because the postmaster died")));
		check_multi(curl_multi_perform(multi, &running));
		n = collect_done();
	}
	return n;
}

HttpTransfer *
http_next_done(void)
{
	HttpTransfer *t;

	if (dlist_is_empty(&done_transfers))
		return NULL;
	t = dlist_head_element(HttpTransfer, done_node, &done_transfers);
	done_list_remove(t);
	return t;
}

/*
 * http_wait_for
 *		Waits, in this backend, until the transfer has finished.
 *		statement_timeout and query cancel interrupt the wait within a poll
 *		interval; the caller's cleanup then frees the transfer.
 */
void
http_wait_for(HttpTransfer *t)
{
	while (!t->done)
	{
		CHECK_FOR_INTERRUPTS();
		http_wait(100);
	}
	/* finished transfers waited for here are not for the delivery loop */
	done_list_remove(t);
}

/* Runs one request to its end; on ERROR the transfer is freed. */
void
http_execute(HttpTransfer *t, const char *method, const char *url,
			 const char *body, const char *header, SyncTarget *target)
{
	PG_TRY();
	{
		http_start(t, method, url, body, header, target);
		http_wait_for(t);
	}
	PG_CATCH();
	{
		http_transfer_free(t);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Text libcurl reports, made safe to show: its error buffer can quote what
 * the remote sent (a certificate's subject, a reply line), in any bytes.
 * Keeps printable ASCII, redacts secrets.
 */
static char *
curl_text(const char *s)
{
	char	   *copy = pstrdup(s);

	for (char *p = copy; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
	return secrets_redact(copy);
}

/*
 * http_cut_error
 *		What to say about an answer whose body was cut at HTTP_MAX_RESPONSE.
 */
char *
http_cut_error(HttpTransfer *t)
{
	return psprintf("the answer (HTTP %ld) was larger than %d bytes and was cut",
					t->status, HTTP_MAX_RESPONSE);
}

/* A transport failure in the user's terms. */
char *
http_transport_error(HttpTransfer *t, SyncTarget *target)
{
	if (t->response_too_large)
		return http_cut_error(t);
	if (t->result == CURLE_OPERATION_TIMEDOUT)
		return psprintf("no complete answer within timeout_ms (%d ms): %s",
						target->timeout_ms,
						t->errbuf[0] ? curl_text(t->errbuf) : "timed out");
	return curl_text(t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
}

/*
 * http_location
 *		Where a 3xx answer pointed, safe to show: without userinfo, query and
 *		fragment (where a remote would put a token), bytes other than
 *		printable ASCII percent-encoded, secrets redacted.  NULL when the
 *		answer gave no Location.
 */
char *
http_location(HttpTransfer *t)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *url = t->location;
	const char *end;
	const char *authority;
	const char *userinfo_end = NULL;
	StringInfoData buf;

	if (url == NULL)
		return NULL;
	end = url + strcspn(url, "?#");
	authority = strstr(url, "://");
	if (authority != NULL && authority < end)
	{
		authority += 3;
		/* userinfo: up to the last @ before the path */
		for (const char *p = authority; p < end && *p != '/'; p++)
			if (*p == '@')
				userinfo_end = p + 1;
	}

	initStringInfo(&buf);
	for (const char *p = url; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (userinfo_end != NULL && p == authority)
			p = userinfo_end - 1;	/* skipped */
		else if (c > 0x20 && c < 0x7f)
			appendStringInfoChar(&buf, (char) c);
		else
		{
			appendStringInfoChar(&buf, '%');
			appendStringInfoChar(&buf, hex[c >> 4]);
			appendStringInfoChar(&buf, hex[c & 15]);
		}
	}
	return secrets_redact(buf.data);
}

/* Percent-encodes everything but RFC 3986 unreserved characters. */
char *
http_path_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	StringInfoData buf;

	initStringInfo(&buf);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~')
			appendStringInfoChar(&buf, (char) *p);
		else
		{
			appendStringInfoChar(&buf, '%');
			appendStringInfoChar(&buf, hex[*p >> 4]);
			appendStringInfoChar(&buf, hex[*p & 15]);
		}
	}
	return buf.data;
}
