/*-------------------------------------------------------------------------
 *
 * cloudcard_auth.c
 *	  CloudCard session tokens, exchanged for a persistent access token
 *	  (POST /authentication-token) and cached per user mapping for the
 *	  backend's life.  A token is renewed five minutes before the
 *	  expirationDate CloudCard gives, and after a 401 (the caller then
 *	  retries once).  Any change to a server or user mapping drops the
 *	  cache.  Tokens live only in this backend's memory.  Every token
 *	  obtained is also a secret (secrets.c), redacted from every answer
 *	  from then on, the exchange's own answer included, even after the
 *	  cache has dropped it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "cloudcard_auth.h"
#include "http.h"
#include "response.h"
#include "secrets.h"

#define RENEW_MARGIN_S 300
/* CloudCard documents 12 hours; used when the answer has no usable date */
#define DEFAULT_LIFETIME_S (11 * 3600)
/* longest session token taken */
#define MAX_TOKEN_LEN 4096

typedef struct SessionToken
{
	Oid			umid;			/* hash key: the user mapping */
	char	   *token;			/* in TopMemoryContext; NULL when invalid */
	TimestampTz renew_at;
	uint64		generation;
} SessionToken;

static HTAB *tokens = NULL;
static uint64 next_generation = 1;

static void
forget_token(SessionToken *entry)
{
	if (entry->token)
	{
		explicit_bzero(entry->token, strlen(entry->token));
		pfree(entry->token);
		entry->token = NULL;
	}
}

/* A server or user mapping changed: its secret may have too. */
static void
invalidate_all(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	SessionToken *entry;

	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	if (tokens == NULL)
		return;
	hash_seq_init(&status, tokens);
	while ((entry = hash_seq_search(&status)) != NULL)
		forget_token(entry);
}

void
cloudcard_auth_init(void)
{
	CacheRegisterSyscacheCallback(USERMAPPINGOID, invalidate_all, (Datum) 0);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, invalidate_all, (Datum) 0);
}

static SessionToken *
token_entry(Oid umid)
{
	bool		found;
	SessionToken *entry;

	if (tokens == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(SessionToken);
		ctl.hcxt = TopMemoryContext;
		tokens = hash_create("campus_sync CloudCard session tokens", 16, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(tokens, &umid, HASH_ENTER, &found);
	if (!found)
	{
		entry->token = NULL;
		entry->renew_at = 0;
		entry->generation = 0;
	}
	return entry;
}

/*
 * When to renew a token: the expirationDate (ISO 8601, UTC or with an
 * offset) less a margin, or a conservative default.
 */
static TimestampTz
renew_time(const char *expiration)
{
	struct pg_tm tm = {0};
	int			offset_h = 0,
				offset_m = 0;
	char		sign = 0;
	const char *p;
	Timestamp	ts;
	TimestampTz now = GetCurrentTimestamp();

	if (expiration == NULL ||
		sscanf(expiration, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon,
			   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6 ||
		tm2timestamp(&tm, 0, NULL, &ts) != 0)
		return now + (int64) DEFAULT_LIFETIME_S * USECS_PER_SEC;

	/* an offset after the seconds (and fraction): +hh:mm, +hhmm or Z */
	p = strchr(expiration, 'T');
	p += strspn(p, "T0123456789:.");
	if (*p == '+' || *p == '-')
	{
		sign = *p;
		if (sscanf(p + 1, "%2d:%2d", &offset_h, &offset_m) < 1)
			sscanf(p + 1, "%2d%2d", &offset_h, &offset_m);
	}
	if (sign)
		ts += (sign == '+' ? -1 : 1) *
			((int64) offset_h * SECS_PER_HOUR + offset_m * SECS_PER_MINUTE) * USECS_PER_SEC;

	ts -= (int64) RENEW_MARGIN_S * USECS_PER_SEC;
	return ts > now ? ts : now;
}

static bool
is_temporary_status(long status)
{
	return status == 408 || status == 425 || status == 429 || status >= 500;
}

/*
 * Can a token go in an X-Auth-Token header as it is?  Visible ASCII only:
 * a CR or LF from a hostile answer would add headers of its choosing.
 */
static bool
usable_token(const char *token)
{
	size_t		len = strlen(token);

	if (len == 0 || len > MAX_TOKEN_LEN)
		return false;
	for (const char *p = token; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			return false;
	return true;
}

/* Exchanges the PAT; on failure fills *failure and returns false. */
static bool
exchange(SyncTarget *target, TargetSecret *secret, SessionToken *entry,
		 AuthFailure *failure)
{
	HttpTransfer *t = http_transfer_create(NULL);
	StringInfoData body;
	char	   *url = psprintf("%s/authentication-token", target->url);
	char	   *token;
	char	   *text;
	ResponseInfo info;
	long		status;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"persistentAccessToken\":");
	escape_json(&body, secret->value);
	appendStringInfoChar(&body, '}');
	secrets_remember(secret->value);

	PG_TRY();
	{
		http_execute(t, "POST", url, body.data, NULL, target);
	}
	PG_FINALLY();
	{
		explicit_bzero(body.data, body.len);
	}
	PG_END_TRY();

	status = t->status;
	failure->http_status = (int) status;
	failure->retry_after_s = t->retry_after_s;
	if (t->result != CURLE_OK && !t->response_too_large)
	{
		failure->error = psprintf("could not exchange the CloudCard persistent access token: %s",
								  http_transport_error(t, target));
		failure->temporary = true;
		http_transfer_free(t);
		return false;
	}
	if (t->response_too_large)
	{
		failure->error = psprintf("could not exchange the CloudCard persistent access token: %s",
								  http_cut_error(t));
		failure->temporary = is_temporary_status(status);
		http_transfer_free(t);
		return false;
	}

	/*
	 * The answer holds the new session token, which redaction would hide:
	 * read it first, and make it a secret before any text of the answer is
	 * made.  Any tokenValue counts, even in an answer that is a failure.
	 */
	token = response_secret_field(t->response, t->response_len, "tokenValue");
	if (token != NULL)
		secrets_remember(token);
	text = response_text(t->response, t->response_len, false);
	if (t->response)
		explicit_bzero(t->response, t->response_len);
	http_transfer_free(t);
	response_info_parse(text, &info);

	if (status == 401 || status == 403)
		failure->error = psprintf("CloudCard refused the persistent access token (HTTP %ld); check the user mapping's persistent_access_token",
								  status);
	else if (status < 200 || status >= 300)
	{
		failure->temporary = is_temporary_status(status);
		failure->error = psprintf("CloudCard answered HTTP %ld to the authentication-token exchange: %s",
								  status, info.message ? info.message : response_excerpt(text));
	}
	else if (token == NULL)
		failure->error = psprintf("CloudCard's authentication-token answer (HTTP %ld) has no tokenValue: %s",
								  status, response_excerpt(text));
	else if (!usable_token(token))
		failure->error = psprintf("CloudCard's authentication-token answer (HTTP %ld) has a tokenValue that cannot be sent in a header (1 to %d visible ASCII characters)",
								  status, MAX_TOKEN_LEN);
	else
	{
		forget_token(entry);
		entry->token = MemoryContextStrdup(TopMemoryContext, token);
		entry->renew_at = renew_time(info.expiration_date);
		entry->generation = next_generation++;
	}
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	return failure->error == NULL;
}

/*
 * cloudcard_session_token
 *		The X-Auth-Token to send for this secret: the fixed auth_token, or a
 *		session token for the PAT (exchanged when there is none or it is due
 *		for renewal).  NULL, with *failure filled, when the exchange fails.
 */
const char *
cloudcard_session_token(SyncTarget *target, TargetSecret *secret,
						uint64 *generation, AuthFailure *failure)
{
	SessionToken *entry;

	memset(failure, 0, sizeof(AuthFailure));
	*generation = 0;
	if (secret->kind != SECRET_CLOUDCARD_PAT)
		return secret->value;

	entry = token_entry(secret->umid);
	if (entry->token == NULL || GetCurrentTimestamp() >= entry->renew_at)
	{
		if (!exchange(target, secret, entry, failure))
			return NULL;
	}
	*generation = entry->generation;
	secrets_remember(entry->token);	/* still among the recently used */
	return entry->token;
}

/* CloudCard answered 401 to the token of that generation: drop it. */
void
cloudcard_token_invalidate(TargetSecret *secret, uint64 generation)
{
	SessionToken *entry;

	if (secret->kind != SECRET_CLOUDCARD_PAT)
		return;
	entry = token_entry(secret->umid);
	if (entry->generation == generation)
		forget_token(entry);
}
