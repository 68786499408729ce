/*-------------------------------------------------------------------------
 *
 * session_share.c
 *	  A small table of session tokens in shared memory, so that every
 *	  backend and the worker use one session per user mapping: the vendor
 *	  sees one exchange per token lifetime, not one per backend (a PAT may
 *	  allow only a few).  Who exchanges is decided by the caller
 *	  (cloudcard_auth.c), under a lock of its own; this file only keeps the
 *	  tokens.  Entries are keyed by database, user mapping and a
 *	  fingerprint of the url and secret: a changed mapping or server finds
 *	  no entry and exchanges anew, with no invalidation across backends.
 *	  When the table is full, the entry due for renewal first goes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "session_share.h"
#include "shmem.h"

#define SESSION_SHARE_ENTRIES 64

typedef struct SharedSession
{
	SessionKey	key;
	bool		used;
	TimestampTz renew_at;
	uint64		generation;
	char		token[SESSION_TOKEN_MAX_LEN + 1];
} SharedSession;

typedef struct SessionShare
{
	LWLock	   *lock;
	uint64		next_generation;
	SharedSession entries[SESSION_SHARE_ENTRIES];
} SessionShare;

static SessionShare *share = NULL;

static void
init_share(void *part, LWLock *lock)
{
	((SessionShare *) part)->lock = lock;
	((SessionShare *) part)->next_generation = 1;
}

void
session_share_request_shmem(void)
{
	shmem_part_add("campus_sync sessions", sizeof(SessionShare), true,
				   (void **) &share, init_share);
}

bool
session_share_available(void)
{
	return share != NULL;
}

static bool
same_key(const SessionKey *a, const SessionKey *b)
{
	return a->database == b->database && a->umid == b->umid &&
		a->fingerprint == b->fingerprint;
}

/* The key's entry, or NULL; the caller holds the lock. */
static SharedSession *
find(const SessionKey *key)
{
	for (int i = 0; i < SESSION_SHARE_ENTRIES; i++)
		if (share->entries[i].used && same_key(&share->entries[i].key, key))
			return &share->entries[i];
	return NULL;
}

/*
 * session_share_get
 *		Copies the key's token into token (SESSION_TOKEN_MAX_LEN + 1 bytes);
 *		false when there is none.
 */
bool
session_share_get(const SessionKey *key, char *token, TimestampTz *renew_at,
				  uint64 *generation)
{
	SharedSession *s;
	bool		found = false;

	LWLockAcquire(share->lock, LW_SHARED);
	if ((s = find(key)) != NULL)
	{
		strlcpy(token, s->token, SESSION_TOKEN_MAX_LEN + 1);
		*renew_at = s->renew_at;
		*generation = s->generation;
		found = true;
	}
	LWLockRelease(share->lock);
	return found;
}

/* Keeps the key's new token; returns its generation. */
uint64
session_share_put(const SessionKey *key, const char *token, TimestampTz renew_at)
{
	SharedSession *s;
	uint64		generation;

	Assert(strlen(token) <= SESSION_TOKEN_MAX_LEN);
	LWLockAcquire(share->lock, LW_EXCLUSIVE);
	if ((s = find(key)) == NULL)
	{
		/* a free entry, else the one due first */
		s = &share->entries[0];
		for (int i = 0; i < SESSION_SHARE_ENTRIES && s->used; i++)
			if (!share->entries[i].used || share->entries[i].renew_at < s->renew_at)
				s = &share->entries[i];
	}
	explicit_bzero(s->token, sizeof(s->token));
	s->key = *key;
	s->used = true;
	strlcpy(s->token, token, sizeof(s->token));
	s->renew_at = renew_at;
	s->generation = generation = share->next_generation++;
	LWLockRelease(share->lock);
	return generation;
}

/* The service refused the token of that generation: it goes. */
void
session_share_invalidate(const SessionKey *key, uint64 generation)
{
	SharedSession *s;

	LWLockAcquire(share->lock, LW_EXCLUSIVE);
	if ((s = find(key)) != NULL && s->generation == generation)
	{
		explicit_bzero(s->token, sizeof(s->token));
		s->used = false;
	}
	LWLockRelease(share->lock);
}
