/*
 * curl_floor: the most a libcurl deliverer can do against a remote, with
 * nothing else to do.  POSTs one body N times, C at a time, over kept-alive
 * connections, with the same libcurl calls campus_sync's deliverer makes (a
 * multi handle, easy handles reset and reused, a header list, a write callback
 * that keeps the answer), and prints requests a second.  bench.py sets it
 * beside wrk and deliver() on the same remote: the share of wrk's rate that
 * libcurl itself leaves to a deliverer.
 *
 * Usage: curl_floor URL CONCURRENCY REQUESTS BODY
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *body;			/* the one wrk sends too (bench.py) */

typedef struct Answer
{
	char		data[4096];
	size_t		len;
	int			slot;
}			Answer;

static size_t
keep_answer(char *p, size_t size, size_t n, void *arg)
{
	Answer	   *a = arg;
	size_t		len = size * n;

	if (a->len + len < sizeof(a->data))
	{
		memcpy(a->data + a->len, p, len);
		a->len += len;
	}
	return len;
}

static CURL *
request(CURL *e, const char *url, struct curl_slist *headers, Answer *answer)
{
	curl_easy_reset(e);
	answer->len = 0;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "curl_floor");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep_answer);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, answer);
	curl_easy_setopt(e, CURLOPT_PRIVATE, answer);
	return e;
}

int
main(int argc, char **argv)
{
	const char *url;
	int			concurrency;
	long		total,
				started = 0,
				done = 0,
				failed = 0;
	CURLM	   *multi;
	CURL	  **easy;
	struct curl_slist *headers = NULL;
	Answer	   *answers;
	struct timespec t0,
				t1;

	if (argc != 5)
	{
		fprintf(stderr, "usage: curl_floor URL CONCURRENCY REQUESTS BODY\n");
		return 2;
	}
	url = argv[1];
	concurrency = atoi(argv[2]);
	total = atol(argv[3]);
	body = argv[4];
	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) concurrency);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "Accept: application/json");
	headers = curl_slist_append(headers, "Expect:");
	answers = calloc(concurrency, sizeof(Answer));
	easy = calloc(concurrency, sizeof(CURL *));
	for (int i = 0; i < concurrency; i++)
	{
		easy[i] = curl_easy_init();
		answers[i].slot = i;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < concurrency && started < total; i++, started++)
		curl_multi_add_handle(multi, request(easy[i], url, headers, &answers[i]));
	while (done < total)
	{
		int			running,
					left;
		CURLMsg    *msg;

		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			Answer	   *a;
			long		status = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &a);
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			if (msg->data.result != CURLE_OK || status != 200)
				failed++;
			curl_multi_remove_handle(multi, msg->easy_handle);
			done++;
			if (started < total)
			{
				curl_multi_add_handle(multi, request(easy[a->slot], url, headers, a));
				started++;
			}
		}
		if (done < total)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.0f %ld\n", done / ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9), failed);
	curl_multi_cleanup(multi);
	for (int i = 0; i < concurrency; i++)
		curl_easy_cleanup(easy[i]);
	curl_slist_free_all(headers);
	curl_global_cleanup();
	return failed ? 1 : 0;
}
