/*-------------------------------------------------------------------------
 *
 * cloudcard_auth.c
 *	  CloudCard session tokens, exchanged for a persistent access token
 *	  (POST /authentication-token).  A token is renewed five minutes
 *	  before the expirationDate CloudCard gives, and after CloudCard
 *	  refuses it (the caller then retries once).  Every exchange opens a
 *	  session at CloudCard, and a PAT may allow only a few:
 *	  - preloaded, one token per user mapping is shared by every backend
 *	    and the worker (session_share.c); a backend that finds none, or one
 *	    due, takes a lock for that mapping and looks again before it
 *	    exchanges, so that 30 backends at once cause one exchange;
 *	  - otherwise each backend keeps its own and logs its sessions out
 *	    when it exits (POST /person/me/logout naming the token: with an
 *	    empty body CloudCard would end every session of the account).
 *	  Each backend keeps a copy of the tokens it uses; any change to a
 *	  server or user mapping drops the copies.  Every token obtained is
 *	  also a secret (secrets.c), redacted from every answer from then on,
 *	  the exchange's own answer included.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "lock_keys.h"
#include "cloudcard.h"
#include "cloudcard_auth.h"
#include "http.h"
#include "response.h"
#include "secrets.h"
#include "session_share.h"

#define RENEW_MARGIN_S 300
/* CloudCard documents 12 hours; used when the answer has no usable date */
#define DEFAULT_LIFETIME_S (11 * 3600)
/* a backend's logouts as it exits: never long */
#define LOGOUT_TIMEOUT_MS 2000

/* This backend's copy of a mapping's token. */
typedef struct SessionToken
{
	Oid			umid;			/* hash key: the user mapping */
	char	   *token;			/* in TopMemoryContext; NULL when none */
	TimestampTz renew_at;
	uint64		generation;
	SessionKey	key;			/* in the shared table, when preloaded */
} SessionToken;

/* A session this backend opened (not preloaded), to log out at exit. */
typedef struct OpenSession
{
	char	   *token;
	SyncTarget *target;			/* what the logout needs of the server */
} OpenSession;

static HTAB *tokens = NULL;
static uint64 next_generation = 1;
static List *open_sessions = NIL;	/* OpenSession, in TopMemoryContext */

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

static void
keep_token(SessionToken *entry, const char *token, TimestampTz renew_at, uint64 generation)
{
	forget_token(entry);
	entry->token = MemoryContextStrdup(TopMemoryContext, token);
	entry->renew_at = renew_at;
	entry->generation = generation;
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

	if (len == 0 || len > SESSION_TOKEN_MAX_LEN)
		return false;
	for (const char *p = token; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			return false;
	return true;
}

/*
 * Exchanges the PAT for a new session token (*token, palloc'd, and when to
 * renew it); on failure fills *failure and returns false.
 */
static bool
exchange(SyncTarget *target, TargetSecret *secret, char **token_out,
		 TimestampTz *renew_at, char **expiration, AuthFailure *failure)
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
		failure->error = psprintf("persistent access token refused; create a new one in CloudCard and set it as the user mapping's persistent_access_token (CloudCard answered HTTP %ld to the token exchange)",
								  status);
	else if (status < 200 || status >= 300)
	{
		failure->temporary = is_temporary_status(status);
		failure->error = psprintf("CloudCard answered HTTP %ld to the authentication-token exchange: %s",
								  status, info.message ? info.message :
								  info.is_json ? response_excerpt(text) : response_first_line(text));
	}
	else if (token == NULL)
		failure->error = psprintf("CloudCard's authentication-token answer (HTTP %ld) has no tokenValue: %s",
								  status, response_excerpt(text));
	else if (!usable_token(token))
		failure->error = psprintf("CloudCard's authentication-token answer (HTTP %ld) has a tokenValue that cannot be sent in a header (1 to %d visible ASCII characters)",
								  status, SESSION_TOKEN_MAX_LEN);
	else
	{
		*token_out = token;
		*renew_at = renew_time(info.expiration_date);
		if (expiration)
			*expiration = info.expiration_date;
		return true;
	}
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	return false;
}


/*
 * Ends one session at CloudCard, naming it: a logout with no token would
 * end every session of the account, other backends' and other tools' too.
 */
static void
logout_session(SyncTarget *target, const char *token)
{
	HttpTransfer *t;
	char	   *header;
	StringInfoData body;

	if (token == NULL || token[0] == '\0')
		elog(ERROR, "a CloudCard logout needs the session's token");
	header = cloudcard_auth_header(token);
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"authenticationToken\":");
	escape_json(&body, token);
	appendStringInfoChar(&body, '}');
	/* made last: http_execute frees it if it raises */
	t = http_transfer_create(NULL);
	PG_TRY();
	{
		http_execute(t, "POST", psprintf("%s/person/me/logout", target->url),
					 body.data, header, target);
	}
	PG_FINALLY();
	{
		explicit_bzero(body.data, body.len);
		explicit_bzero(header, strlen(header));
	}
	PG_END_TRY();
	http_transfer_free(t);
}

/*
 * Logs this backend's sessions out as it exits (not preloaded).  Best
 * effort, briefly: nothing here may raise, and an exiting backend waits
 * for nobody.
 */
static void
logout_at_exit(int code, Datum arg)
{
	ListCell   *lc;
	MemoryContext old;

	(void) code;
	(void) arg;
	HOLD_INTERRUPTS();
	old = MemoryContextSwitchTo(TopMemoryContext);
	foreach(lc, open_sessions)
	{
		OpenSession *s = lfirst(lc);

		if (s->token[0] == '\0' || !PostmasterIsAlive())
			continue;
		PG_TRY();
		{
			logout_session(s->target, s->token);
		}
		PG_CATCH();
		{
			FlushErrorState();
		}
		PG_END_TRY();
		explicit_bzero(s->token, strlen(s->token));
	}
	MemoryContextSwitchTo(old);
	RESUME_INTERRUPTS();
}

/* Remembers a session this backend opened, to log it out at exit. */
static void
note_open_session(SyncTarget *target, const char *token)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	OpenSession *s = palloc0(sizeof(OpenSession));

	if (open_sessions == NIL)
		before_shmem_exit(logout_at_exit, (Datum) 0);
	s->token = pstrdup(token);
	s->target = palloc0(sizeof(SyncTarget));
	s->target->service = target->service;
	s->target->server_name = pstrdup(target->server_name);
	s->target->url = pstrdup(target->url);
	s->target->ca_file = target->ca_file ? pstrdup(target->ca_file) : NULL;
	s->target->verify_tls = target->verify_tls;
	s->target->connect_timeout_ms = Min(target->connect_timeout_ms, LOGOUT_TIMEOUT_MS);
	s->target->timeout_ms = Min(target->timeout_ms, LOGOUT_TIMEOUT_MS);
	open_sessions = lappend(open_sessions, s);
	MemoryContextSwitchTo(old);
}

/* A session CloudCard refused is over: no logout for it. */
static void
note_session_over(const char *token)
{
	ListCell   *lc;

	foreach(lc, open_sessions)
	{
		OpenSession *s = lfirst(lc);

		if (s->token && strcmp(s->token, token) == 0)
		{
			explicit_bzero(s->token, strlen(s->token));
			s->token[0] = '\0';
		}
	}
}

static SessionKey
session_key(SyncTarget *target, TargetSecret *secret)
{
	SessionKey	key;

	key.database = MyDatabaseId;
	key.umid = secret->umid;
	key.fingerprint = hash_combine64(hash_bytes_extended((const unsigned char *) target->url,
														 strlen(target->url), 0),
									 hash_bytes_extended((const unsigned char *) secret->value,
														 strlen(secret->value), 0));
	return key;
}

/* The shared token, when there is one not due for renewal. */
static bool
take_shared(SessionToken *entry)
{
	char		token[SESSION_TOKEN_MAX_LEN + 1];
	TimestampTz renew_at;
	uint64		generation;
	bool		usable;

	usable = session_share_get(&entry->key, token, &renew_at, &generation) &&
		GetCurrentTimestamp() < renew_at;
	if (usable)
		keep_token(entry, token, renew_at, generation);
	explicit_bzero(token, sizeof(token));
	return usable;
}

/*
 * Preloaded: the shared token, or a new one exchanged by this backend
 * while it holds the mapping's lock; the others wait on the lock and find
 * the new token.
 */
static bool
shared_session_token(SyncTarget *target, TargetSecret *secret, SessionToken *entry,
					 AuthFailure *failure)
{
	LOCKTAG		tag;
	volatile bool ok = true;

	entry->key = session_key(target, secret);
	if (take_shared(entry))
		return true;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, EXCHANGE_LOCK_CLASS, secret->umid, EXCHANGE_LOCK_SUBID);
	(void) LockAcquire(&tag, ExclusiveLock, true, false);
	PG_TRY();
	{
		if (!take_shared(entry))
		{
			char	   *token;
			TimestampTz renew_at;

			ok = exchange(target, secret, &token, &renew_at, NULL, failure);
			if (ok)
			{
				keep_token(entry, token, renew_at,
						   session_share_put(&entry->key, token, renew_at));
				explicit_bzero(token, strlen(token));
			}
		}
	}
	PG_FINALLY();
	{
		LockRelease(&tag, ExclusiveLock, true);
	}
	PG_END_TRY();
	return ok;
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
	if (!cloudcard_uses_pat(secret))
		return secret->value;

	entry = token_entry(secret->umid);
	if (entry->token == NULL || GetCurrentTimestamp() >= entry->renew_at)
	{
		if (session_share_available())
		{
			if (!shared_session_token(target, secret, entry, failure))
				return NULL;
		}
		else
		{
			char	   *token;
			TimestampTz renew_at;

			if (!exchange(target, secret, &token, &renew_at, NULL, failure))
				return NULL;
			keep_token(entry, token, renew_at, next_generation++);
			note_open_session(target, token);
			explicit_bzero(token, strlen(token));
		}
	}
	*generation = entry->generation;
	secrets_remember(entry->token);	/* still among the recently used */
	return entry->token;
}

/* CloudCard refused the token of that generation: drop it. */
void
cloudcard_token_invalidate(TargetSecret *secret, uint64 generation)
{
	SessionToken *entry;

	if (!cloudcard_uses_pat(secret))
		return;
	entry = token_entry(secret->umid);
	if (entry->generation != generation || entry->token == NULL)
		return;
	if (session_share_available())
		session_share_invalidate(&entry->key, generation);
	else
		note_session_over(entry->token);
	forget_token(entry);
}

/* check_server(): the url, TLS and the credentials, changing nothing */
#define CHECK_PROBE_KEY "campus-sync-check"

static const char *
url_hint(void)
{
	return "The url is CloudCard's base, such as https://api.cloudcard.us (a trailing /api is dropped); campus_sync appends /authentication-token and /person.";
}

/* A PAT that could not be exchanged, as check_server() reports it. */
static void
check_exchange_failed(SyncTarget *target, AuthFailure *failure, ServerCheck *out)
{
	out->http_status = failure->http_status;
	if (failure->http_status == 0)
	{
		out->detail = failure->error;
		out->hint = check_hint_transport();
	}
	else if (failure->http_status == 404)
	{
		out->detail = psprintf("HTTP 404 at %s/authentication-token: is the url right?", target->url);
		out->hint = pstrdup(url_hint());
	}
	else
	{
		out->detail = failure->error;
		if (failure->http_status == 401 || failure->http_status == 403)
			out->hint = pstrdup("Create a new persistent access token in CloudCard and set it: ALTER USER MAPPING ... OPTIONS (SET persistent_access_token '...').");
	}
}

/*
 * check_server() for CloudCard: a PAT is exchanged for a session of the
 * check's own, which reads a person no one has (GET /person/...: 404 is the
 * expected answer) and is logged out; an auth_token reads.
 */
void
cloudcard_check(SyncTarget *target, TargetSecret *secret, ServerCheck *out)
{
	bool		pat = cloudcard_uses_pat(secret);
	char	   *session = NULL;
	char	   *expiration = NULL;
	const char *token = secret->value;
	char	   *url = psprintf("%s/person/%s?findBy=identifier", target->url, CHECK_PROBE_KEY);
	HttpTransfer *t;
	ResponseInfo info;
	char	   *text;
	char	   *transport = NULL;
	char	   *header;
	int			status;

	secrets_remember(secret->value);
	if (pat)
	{
		AuthFailure failure = {0};
		TimestampTz renew_at;

		if (!exchange(target, secret, &session, &renew_at, &expiration, &failure))
		{
			check_exchange_failed(target, &failure, out);
			return;
		}
		token = session;
	}

	t = http_transfer_create(NULL);
	header = cloudcard_auth_header(token);
	http_execute(t, "GET", url, NULL, header, target);
	explicit_bzero(header, strlen(header));
	status = (int) t->status;
	if (t->result != CURLE_OK && !t->response_too_large)
		transport = http_transport_error(t, target);
	text = response_text(t->response, t->response_len, t->response_too_large);
	http_transfer_free(t);
	response_info_parse(text, &info);
	if (session)
		logout_session(target, session);

	out->http_status = transport ? 0 : status;
	if (transport)
	{
		out->detail = transport;
		out->hint = check_hint_transport();
	}
	else if (status == 200 || (status == 404 && info.is_json))
	{
		out->ok = true;
		out->detail = pat ?
			psprintf("PAT accepted, session valid until %s; GET /person answered HTTP %d; the check's session was logged out",
					 expiration ? expiration : "(no expirationDate given)", status) :
			psprintf("auth_token accepted: GET /person answered HTTP %d", status);
	}
	else if (status == 401 || status == 403)
	{
		out->detail = pat ?
			psprintf("CloudCard refused the session token it had just given for the PAT (HTTP %d at GET %s/person)",
					 status, target->url) :
			psprintf("auth_token refused (HTTP %d at GET %s/person)", status, target->url);
		out->hint = pstrdup(pat ? "Check that the PAT's account may read people (an office or director account)." :
							"Set a valid auth_token: ALTER USER MAPPING ... OPTIONS (SET auth_token '...'), or use persistent_access_token.");
	}
	else if (status == 404)
	{
		out->detail = psprintf("HTTP 404 at %s/person: is the url right?", target->url);
		out->hint = pstrdup(url_hint());
	}
	else
		out->detail = psprintf("CloudCard answered HTTP %d at GET %s/person: %s", status, target->url,
							   info.is_json ? response_excerpt(text) : response_first_line(text));
	if (session)
		explicit_bzero(session, strlen(session));
}
