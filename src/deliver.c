/*-------------------------------------------------------------------------
 *
 * deliver.c
 *	  The delivery engine.  Moves new items from the inbox into the queue
 *	  (one deliverer at a time), claims due items the way SELECT ... FOR
 *	  UPDATE SKIP LOCKED would (concurrent deliverers never send an item
 *	  twice at once), keeps up to `concurrency` requests in flight per
 *	  server on the backend's libcurl multi handle, and records each
 *	  outcome as it comes.
 *
 *	  Per person, one request at a time, the newest state: a claim takes a
 *	  person's newest waiting item and the older ones it supersedes
 *	  (queue_claim.c).
 *
 *	  Without a commit function, everything happens in the caller's
 *	  transaction (deliver()): results become visible at its commit, and if
 *	  it aborts, everything it sent is sent again later (at least once).
 *	  With one (deliver_batches(), the worker), the outcomes that came in
 *	  are committed at once, together, while other requests are in flight:
 *	  a request's slot stays taken until its outcome is committed, so an
 *	  interruption resends at most `concurrency` items per server.  The
 *	  persons claimed or in flight stay held across those commits by their
 *	  advisory locks (queue_claim.c); their rows are locked again, in the
 *	  transaction of the moment, when a request starts and when its outcome
 *	  is written.  While a deliverer holds items it holds the campus_sync
 *	  deliverer lock, which is how the queue view tells that they are in
 *	  flight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "campus_sync.h"
#include "lock_keys.h"
#include "deliver.h"
#include "health.h"
#include "pace.h"
#include "pause.h"
#include "http.h"
#include "queue_buffer.h"
#include "queue_store.h"
#include "request.h"
#include "sync_state.h"
#include "target.h"

#define PROGRESS_INTERVAL_S 5
#define POLL_MS 100
/* with commit hooks: save the target's health with a batch at most this often */
#define HEALTH_SAVE_INTERVAL_MS 1000
/* the worker: purge delivered items at most this often (it scans the queue) */
#define PURGE_INTERVAL_S 60

typedef struct ServerRun ServerRun;

typedef struct DeliverItem
{
	SyncJob		job;			/* first: a transfer's owner is its job */
	dlist_node	node;			/* in its server's list of items in flight */
	ServerRun  *server;
	MemoryContext mcxt;
	ItemPointerData tid;		/* the version this run holds locked */
	int64		id;
	char	   *person_key;
	uint32		person_lock;	/* held until the outcome is committed */
	char	   *enqueued_by;
	char	   *service;		/* what the item was built for */
	char	   *key_field;
	bool		disable;		/* a DELETE's (on_delete 'disable') */
	int			attempts;
	bool		probe;
	char	   *payload;		/* read when it is about to start */
	bool		hashed;			/* body_hash is the payload's */
	uint8		body_hash[BODY_HASH_LEN];
	/* the run's commit generations of its row locks (see still_locked) */
	uint64		locked_gen;		/* of the item's row */
	uint64		claimed_gen;	/* of the superseded items' rows */
	/* the person's older items this one supersedes, removed when it ends */
	int			nsuperseded;
	ItemPointerData *superseded_tids;
	int64	   *superseded_ids;
} DeliverItem;

/* A role's secret for a server, looked up once per run. */
typedef struct RoleSecret
{
	char	   *role;
	TargetSecret *secret;		/* NULL: no user mapping */
} RoleSecret;

struct ServerRun
{
	SyncTarget *target;
	TargetHealth health;
	List	   *claimed;		/* DeliverItem, claimed and not started */
	dlist_head	flying;			/* DeliverItem, started and not ended */
	int			in_flight;
	int			uncommitted;	/* ended, outcome not committed yet */
	TimestampTz health_saved_at;	/* by a batch commit */
	ClaimCursor cursor;			/* where claims go on */
	bool		exhausted;		/* nothing due at the last claim */
	bool		pause_told;		/* deliver() said the server is paused */
	List	   *secrets;		/* RoleSecret */
	DeliveredBatch *delivered;	/* for the memory, with the next commit */
	DeliverCounts counts;
};

typedef struct DeliverRun
{
	MemoryContext mcxt;			/* lives as long as the run */
	MemoryContext settle_cxt;	/* what settling one item needs; reset after each */
	MemoryContext claim_cxt;	/* what one claim needs; reset after each */
	QueueStore *store;
	List	   *servers;		/* ServerRun */
	int64		max_items;		/* 0: no limit */
	int64		started;
	TimestampTz deadline;
	bool		mover;			/* this transaction moves the inbox */
	bool		inbox_unread;	/* the inbox may hold rows no move here saw */
	const DeliverHooks *hooks;	/* NULL: one transaction, the caller's */
	List	   *ended;			/* (server, person lock) of uncommitted outcomes */
	uint64		generation;		/* commits so far: row locks older are gone */
	bool		pushed_snapshot;	/* an active snapshot of ours, after a commit */
	TimestampTz looked_at;		/* when exhausted servers were last asked again */
	TimestampTz pace_at;		/* the next start a server's pace waits for; 0: none */
} DeliverRun;

/* A person this run holds until its outcome is committed. */
typedef struct HeldPerson
{
	Oid			server_oid;
	uint32		person_lock;
} HeldPerson;

static SPIPlanPtr purge_plan = NULL;

static void
add_held(int64 **ids, int *n, int *size, DeliverItem *item)
{
	if (*n + 1 + item->nsuperseded > *size)
	{
		*size = (*n + 1 + item->nsuperseded) * 2;
		*ids = repalloc(*ids, sizeof(int64) * *size);
	}
	(*ids)[(*n)++] = item->id;
	for (int i = 0; i < item->nsuperseded; i++)
		(*ids)[(*n)++] = item->superseded_ids[i];
}

/* The items this run holds for a server (it must not claim them again). */
static int64 *
held_ids(ServerRun *sr, int *n)
{
	int			size = 64;
	int64	   *ids = palloc(sizeof(int64) * size);
	ListCell   *lc;
	dlist_iter	iter;

	*n = 0;
	foreach(lc, sr->claimed)
		add_held(&ids, n, &size, lfirst(lc));
	dlist_foreach(iter, &sr->flying)
		add_held(&ids, n, &size, dlist_container(DeliverItem, node, iter.cur));
	return ids;
}

static DeliverItem *
new_item(DeliverRun *run, ServerRun *sr, ClaimedItem *c)
{
	MemoryContext cxt = AllocSetContextCreate(run->mcxt, "campus_sync item",
											  ALLOCSET_SMALL_SIZES);
	DeliverItem *item = MemoryContextAllocZero(cxt, sizeof(DeliverItem));

	item->mcxt = cxt;
	item->server = sr;
	item->tid = c->tid;
	item->id = c->id;
	item->person_key = MemoryContextStrdup(cxt, c->person_key);
	item->person_lock = c->person_lock;
	item->enqueued_by = MemoryContextStrdup(cxt, c->enqueued_by);
	item->service = MemoryContextStrdup(cxt, c->service);
	item->key_field = MemoryContextStrdup(cxt, c->key_field);
	item->disable = c->disable;
	item->attempts = c->attempts;
	item->locked_gen = item->claimed_gen = run->generation;
	item->nsuperseded = c->nsuperseded;
	item->superseded_tids = MemoryContextAlloc(cxt, sizeof(ItemPointerData) * Max(1, c->nsuperseded));
	item->superseded_ids = MemoryContextAlloc(cxt, sizeof(int64) * Max(1, c->nsuperseded));
	for (int i = 0; i < c->nsuperseded; i++)
	{
		item->superseded_tids[i] = c->superseded_tids[i];
		item->superseded_ids[i] = c->superseded_ids[i];
	}
	return item;
}

/*
 * Only one deliverer at a time moves items from the inbox, and it keeps
 * the right until its transaction ends: the items it moved stay invisible
 * to the others until then, and two deliverers each holding a different
 * state of one person could send them out of order.  The others deliver
 * what is already in the queue.
 */
/* Is the caller woken when items come, and calls again and again (the worker)? */
static bool
continuous(DeliverRun *run)
{
	return run->hooks != NULL && run->hooks->woken != NULL;
}

static bool
take_mover_lock(DeliverRun *run)
{
	LOCKTAG		tag;

	if (run->mover)
		return true;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, DELIVERER_LOCK_CLASS,
						 DELIVERER_LOCK_OBJID, MOVER_LOCK_SUBID);
	run->mover = LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
	return run->mover;
}

/*
 * New items in the inbox: move them into the queue, where every server's
 * claims can find them.
 */
static bool
move_new_items(DeliverRun *run)
{
	ListCell   *lc;

	if (!run->inbox_unread || !take_mover_lock(run))
		return false;

	/*
	 * A caller that is woken when items come (the worker) reads the inbox
	 * again only then: reading it scans every page it has, empty or not.
	 */
	if (continuous(run))
		run->inbox_unread = false;
	if (queue_move_inbox(run->store) == 0)
		return false;
	foreach(lc, run->servers)
	{
		ServerRun  *sr = lfirst(lc);

		sr->exhausted = false;
		sr->cursor.person_key = NULL;
	}
	return true;
}

/*
 * Claims up to n due items of a server from its cursor on (then from the
 * start: people before the cursor may have become due; then after moving
 * what arrived in the inbox meanwhile).
 */
static int
claim(DeliverRun *run, ServerRun *sr, int n)
{
	List	   *claimed = NIL;
	ListCell   *lc;
	MemoryContext old;
	int			nclaimed;
	char	   *paused = server_pause_text(sr->target->server_oid);

	/* paused: nothing more starts (what flies ends); asked again later */
	if (paused != NULL)
	{
		if (!continuous(run) && !sr->pause_told)
			ereport(NOTICE,
					(errmsg("server \"%s\" is paused: nothing was sent to it",
							sr->target->server_name),
					 errdetail("Paused %s.", paused),
					 errhint("SELECT campus_sync.resume(%s);",
							 quote_literal_cstr(sr->target->server_name))));
		sr->pause_told = true;
		sr->exhausted = true;
		return 0;
	}

	/* one fill may claim any number of times (see settle_item) */
	old = MemoryContextSwitchTo(run->claim_cxt);
	for (int pass = 0; pass < 3; pass++)
	{
		int			nheld;
		int64	   *held = held_ids(sr, &nheld);

		claimed = queue_claim(run->store, sr->target->server_oid, &sr->cursor,
							  held, nheld, n);
		if (claimed != NIL)
			break;
		if (sr->cursor.person_key != NULL)
			sr->cursor.person_key = NULL;
		else if (pass == 2 || !move_new_items(run))
			break;
	}

	MemoryContextSwitchTo(run->mcxt);
	if (sr->cursor.person_key)
		sr->cursor.person_key = pstrdup(sr->cursor.person_key);
	foreach(lc, claimed)
		sr->claimed = lappend(sr->claimed, new_item(run, sr, lfirst(lc)));
	MemoryContextSwitchTo(old);
	nclaimed = list_length(claimed);
	MemoryContextReset(run->claim_cxt);
	sr->exhausted = nclaimed == 0;
	return nclaimed;
}

static TargetSecret *
secret_for(DeliverRun *run, ServerRun *sr, const char *role)
{
	ListCell   *lc;
	RoleSecret *rs;
	MemoryContext old;

	foreach(lc, sr->secrets)
	{
		rs = lfirst(lc);
		if (strcmp(rs->role, role) == 0)
			return rs->secret;
	}
	old = MemoryContextSwitchTo(run->mcxt);
	rs = palloc(sizeof(RoleSecret));
	rs->role = pstrdup(role);
	/* a dropped role's items use the PUBLIC mapping */
	rs->secret = target_secret(sr->target, get_role_oid(role, true), true);
	sr->secrets = lappend(sr->secrets, rs);
	MemoryContextSwitchTo(old);
	return rs->secret;
}

/* Exponential backoff with jitter, at least Retry-After, at most the cap. */
static double
backoff_seconds(int attempts, double retry_after_s, int max_delay_s)
{
	double		delay = Min(ldexp(1.0, Min(attempts - 1, 30)), (double) max_delay_s);

	delay *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
	if (retry_after_s > delay)
		delay = Min(retry_after_s, (double) max_delay_s);
	return delay;
}

/* What an ended job makes of its item, and the counters and health. */
static void
judge(ServerRun *sr, DeliverItem *item, ItemOutcome *o)
{
	SyncJob    *job = &item->job;
	SyncTarget *t = sr->target;
	TimestampTz now = GetCurrentTimestamp();
	int			attempts = item->attempts + 1;

	memset(o, 0, sizeof(ItemOutcome));
	o->attempts = attempts;
	o->next_attempt_at = now;
	o->http_status = job->http_status;
	o->error = job->error;
	o->remote_id = job->remote_id;

	if (job->outcome == JOB_OK)
	{
		health_success(&sr->health, now);
		o->state = "delivered";
		o->delivered_at = now;
		sr->counts.delivered++;
	}
	else if (job->outcome == JOB_PERMANENT)
	{
		(void) health_failure(&sr->health, false, job->error, -1, now, item->probe);
		o->state = "failed";
		sr->counts.failed++;
	}
	else if (health_failure(&sr->health, true, job->error, job->retry_after_s, now,
							item->probe))
	{
		/* the target is down: the attempt does not count, the probe decides */
		o->state = "retrying";
		o->attempts = item->attempts;
		o->error = psprintf("%s (target down; the attempt was not counted)", job->error);
		sr->counts.retried++;
	}
	else if (attempts >= t->max_attempts)
	{
		o->state = "failed";
		o->error = psprintf("gave up after %d attempts: %s", attempts, job->error);
		sr->counts.failed++;
	}
	else
	{
		double		delay = backoff_seconds(attempts, job->retry_after_s, t->retry_max_delay_s);

		o->state = "retrying";
		o->next_attempt_at = now + (int64) (delay * USECS_PER_SEC);
		sr->counts.retried++;
	}
}

/*
 * The person stays held until the outcome is committed: by the caller's
 * transaction (its row lock holds it) or by the next batch commit (its
 * advisory lock does, across the commit).
 */
static void
hold_until_commit(DeliverRun *run, DeliverItem *item, bool sent)
{
	HeldPerson *p;
	MemoryContext old;

	if (run->hooks == NULL)
	{
		/* the item's row lock holds the person until the caller commits */
		queue_person_unlock(item->server->target->server_oid, item->person_lock);
		return;
	}
	p = MemoryContextAlloc(run->mcxt, sizeof(HeldPerson));
	old = MemoryContextSwitchTo(run->mcxt);

	p->server_oid = item->server->target->server_oid;
	p->person_lock = item->person_lock;
	run->ended = lappend(run->ended, p);
	if (sent)					/* its slot stays taken until then */
		item->server->uncommitted++;
	MemoryContextSwitchTo(old);
}

/*
 * Is the row at tid, which this run locked in generation *gen, locked by
 * the current transaction?  A batch commit ended the locks of earlier
 * generations (the persons stay held by their advisory locks): the row is
 * locked again, unless it changed meanwhile (retried, removed) — then false.
 */
static bool
still_locked(DeliverRun *run, uint64 *gen, ItemPointer tid)
{
	if (*gen == run->generation)
		return true;
	if (!queue_relock(run->store, tid))
		return false;
	*gen = run->generation;
	return true;
}

static void record_settled(DeliverRun *run, DeliverItem *item, ItemOutcome *outcome);

/*
 * Records what became of an item (outcome NULL: it is removed unsent, the
 * target has its body already), lets its person go with the commit, and
 * frees it.
 */
static void
settle_item(DeliverRun *run, DeliverItem *item, ItemOutcome *outcome)
{
	ServerRun  *sr = item->server;

	/*
	 * A fill may settle any number of items without waiting (bodies the
	 * target has, items that fail before a request): what settling one
	 * needs goes with it, not with the loop's turn.
	 */
	MemoryContext old = MemoryContextSwitchTo(run->settle_cxt);

	hold_until_commit(run, item, outcome != NULL);
	if (outcome != NULL && item->hashed && strcmp(outcome->state, "delivered") == 0)
		delivered_batch_add(sr->delivered, item->person_key, item->body_hash,
							outcome->remote_id);
	if (still_locked(run, &item->locked_gen, &item->tid))
		record_settled(run, item, outcome);
	/* else someone changed the row while the request was out: theirs stands */
	MemoryContextSwitchTo(old);
	MemoryContextReset(run->settle_cxt);
	MemoryContextDelete(item->mcxt);
}

/* Writes what became of a settled item whose row is still as it was. */
static void
record_settled(DeliverRun *run, DeliverItem *item, ItemOutcome *outcome)
{
	ServerRun  *sr = item->server;

	if (outcome != NULL)
		queue_record(run->store, &item->tid, outcome);
	else
		queue_remove(run->store, &item->tid);
	for (int i = 0; i < item->nsuperseded; i++)
		if (item->claimed_gen == run->generation ||
			queue_relock(run->store, &item->superseded_tids[i]))
			queue_remove(run->store, &item->superseded_tids[i]);

	/* a later item of this person may be due now that this one is done */
	if (queue_has_successor(run->store, sr->target->server_oid, item->person_key, item->id) &&
		(sr->exhausted ||
		 (sr->cursor.person_key && strcmp(item->person_key, sr->cursor.person_key) <= 0)))
	{
		sr->exhausted = false;
		sr->cursor.person_key = MemoryContextStrdup(run->mcxt, item->person_key);
		sr->cursor.inclusive = true;
	}
}

/* Records what became of an item whose job has ended, and frees it. */
static void
complete_item(DeliverRun *run, DeliverItem *item)
{
	ItemOutcome outcome;

	item->server->in_flight--;
	dlist_delete(&item->node);
	judge(item->server, item, &outcome);
	settle_item(run, item, &outcome);
}

/*
 * Why an item must not be sent to its server as it is now, or NULL.  The
 * server's service or person key changed after the item was built (ALTER
 * SERVER refuses that while items wait; retry_failed() can bring older
 * ones back).
 */
static char *
binding_problem(DeliverItem *item)
{
	SyncTarget *t = item->server->target;

	if (item->disable && t->service->disable_body == NULL)
		return psprintf("not sent: a disable, but server \"%s\" is now service %s, which cannot disable anyone",
						t->server_name, t->service->name);
	if (strcmp(item->service, t->service->name) == 0 &&
		strcmp(item->key_field, target_key_field(t)) == 0)
		return NULL;
	return psprintf("not sent: the item was built for service %s keyed by %s, but server \"%s\" is now service %s keyed by %s; queue the person again",
					item->service, item->key_field, t->server_name,
					t->service->name, target_key_field(t));
}

static void
start_item(DeliverRun *run, DeliverItem *item, bool slot_taken)
{
	ServerRun  *sr = item->server;
	TargetSecret *secret = secret_for(run, sr, item->enqueued_by);
	MemoryContext old = MemoryContextSwitchTo(item->mcxt);
	char	   *problem = binding_problem(item);

	run->started++;
	sr->in_flight++;
	dlist_push_tail(&sr->flying, &item->node);
	/* read only now: claimed items waiting for a slot hold no payload */
	job_init(&item->job, item->disable ? JOB_DISABLE : JOB_PUSH, sr->target, secret,
			 problem ? NULL : item->payload, item->person_key);
	item->job.slot_taken = slot_taken;
	if (problem)
	{
		item->job.outcome = JOB_PERMANENT;
		item->job.error = problem;
	}
	else if (secret == NULL)
	{
		/* the mapping went away after the item was queued */
		item->job.outcome = JOB_PERMANENT;
		item->job.error = psprintf("no user mapping for role \"%s\" or PUBLIC on server \"%s\"",
								   item->enqueued_by, sr->target->server_name);
	}
	else
		job_start(&item->job);
	MemoryContextSwitchTo(old);
	if (item->job.outcome != JOB_RUNNING)
		complete_item(run, item);
}

static bool
stopping(DeliverRun *run)
{
	return GetCurrentTimestamp() >= run->deadline ||
		(run->max_items > 0 && run->started >= run->max_items);
}

/*
 * Reads the item's body; true when the target has it already (the memory
 * says so, and skip_unchanged): the item, the person's newest, has nothing
 * to send.
 */
static bool
unchanged(DeliverRun *run, DeliverItem *item)
{
	SyncTarget *target = item->server->target;

	if (binding_problem(item) != NULL)
		return false;			/* start_item fails it */
	item->payload = queue_fetch_payload(run->store, &item->tid);
	if (item->payload == NULL)
		return false;
	item->payload = MemoryContextStrdup(item->mcxt, item->payload);
	body_hash(target, item->payload, item->body_hash);
	item->hashed = true;
	return target->skip_unchanged &&
		delivered_unchanged(target, item->person_key, item->body_hash, NULL);
}

/*
 * The next claimed item whose row is still as claimed (after a batch
 * commit, it is checked, not locked again: its outcome will be, and a
 * change made while it is in flight stands over the outcome); one that
 * changed since is let go, to be claimed anew if it is still due.  One
 * whose body the target has already is removed unsent.  NULL when no
 * claimed item is left.
 */
static DeliverItem *
next_claimed(DeliverRun *run, ServerRun *sr)
{
	while (sr->claimed != NIL)
	{
		DeliverItem *item = linitial(sr->claimed);
		MemoryContext old = MemoryContextSwitchTo(run->mcxt);

		sr->claimed = list_delete_first(sr->claimed);
		MemoryContextSwitchTo(old);
		if (item->locked_gen == run->generation ||
			queue_row_current(run->store, &item->tid))
		{
			bool		same;

			/* with the item: any number may be removed in one fill */
			old = MemoryContextSwitchTo(item->mcxt);
			same = unchanged(run, item);
			MemoryContextSwitchTo(old);
			if (!same)
				return item;
			settle_item(run, item, NULL);
			sr->counts.unchanged++;
			continue;
		}
		queue_person_unlock(sr->target->server_oid, item->person_lock);
		MemoryContextDelete(item->mcxt);
	}
	return NULL;
}

/* Claims up to twice the concurrency more (within max_items). */
static int
claim_more(DeliverRun *run, ServerRun *sr)
{
	int64		want = 2 * sr->target->concurrency;

	if (sr->exhausted)
		return 0;
	if (run->max_items > 0)
		want = Min(want, run->max_items - run->started - list_length(sr->claimed));
	if (want <= 0)
		return 0;
	return claim(run, sr, (int) want);
}

/*
 * Starts items of a server while it has room; claims more when needed.
 * A server that is down gets one probe when one is due.
 */
/* The loop's wait ends when the pace of a server lets it start again. */
static void
wake_at(DeliverRun *run, TimestampTz at)
{
	if (run->pace_at == 0 || at < run->pace_at)
		run->pace_at = at;
}

/*
 * May a request to the server start now (max_rate, a 429's Retry-After)?
 * A look only: nothing is taken.
 */
static bool
pace_allows(DeliverRun *run, ServerRun *sr)
{
	TimestampTz at = pace_next_start(sr->target);

	if (at <= GetCurrentTimestamp())
		return true;
	wake_at(run, at);
	return false;
}

/* Takes the pace slot of the next item's request, if it may start now. */
static bool
pace_slot(DeliverRun *run, ServerRun *sr)
{
	TimestampTz at;

	if (pace_take(sr->target, &at))
		return true;
	wake_at(run, at);
	return false;
}

static void
fill(DeliverRun *run, ServerRun *sr)
{
	if (!pace_allows(run, sr))
		return;
	if (!sr->health.up)
	{
		DeliverItem *probe;

		if (sr->in_flight > 0 || sr->exhausted ||
			!health_probe_due(&sr->health, GetCurrentTimestamp()))
			return;
		if (sr->claimed == NIL && claim(run, sr, 1) == 0)
			return;				/* nothing to probe with */
		if (!pace_slot(run, sr))
			return;
		if ((probe = next_claimed(run, sr)) == NULL)
			return;				/* the next cycle probes */
		probe->probe = true;
		start_item(run, probe, true);
		return;
	}

	while (sr->in_flight + sr->uncommitted < sr->target->concurrency && !stopping(run))
	{
		DeliverItem *item;

		if (sr->claimed == NIL && claim_more(run, sr) == 0)
			return;
		if (!pace_slot(run, sr))
			break;				/* the next slot is later */
		if ((item = next_claimed(run, sr)) == NULL)
			continue;			/* every one had changed (a slot lost): claim again */
		start_item(run, item, true);
		if (!sr->health.up)
			return;				/* it just went down */
	}

	/*
	 * Claim the next items now, while every slot is busy, rather than when
	 * a slot is free and would wait for the claim.
	 */
	if (list_length(sr->claimed) < sr->target->concurrency && !stopping(run))
		(void) claim_more(run, sr);
}

/*
 * With commit hooks, the outcomes that came in are committed at once,
 * together: a slot is free again only once its outcome is committed, so
 * waiting for more would leave slots idle.  (The commits batch themselves:
 * while one runs, more outcomes come in for the next.)
 */
static bool
commit_due(DeliverRun *run)
{
	return run->hooks != NULL && run->ended != NIL;
}

static void
release_ended(DeliverRun *run)
{
	ListCell   *lc;

	foreach(lc, run->ended)
	{
		HeldPerson *p = lfirst(lc);

		queue_person_unlock(p->server_oid, p->person_lock);
	}
	list_free_deep(run->ended);
	run->ended = NIL;
}

/* Servers that had nothing due are asked again. */
static void
look_again(DeliverRun *run)
{
	ListCell   *lc;

	foreach(lc, run->servers)
		((ServerRun *) lfirst(lc))->exhausted = false;
	run->looked_at = GetCurrentTimestamp();
}

/*
 * After a commit, items that others held may be free, and retries may have
 * become due: servers that had nothing due are asked again, but at most
 * every POLL_MS (asking costs index probes; a commit comes every few ms).
 */
static void
look_again_after_commit(DeliverRun *run)
{
	if (GetCurrentTimestamp() >= run->looked_at + POLL_MS * 1000)
		look_again(run);
}

static void take_deliverer_lock(void);

/*
 * Commits the outcomes recorded so far and goes on in a new transaction:
 * the persons whose outcomes are now durable are let go, the ones claimed
 * or in flight stay held (their advisory locks outlive the transaction).
 */
static void
commit_batch(DeliverRun *run)
{
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, run->servers)
	{
		ServerRun  *sr = lfirst(lc);
		TimestampTz now = GetCurrentTimestamp();

		/* a success only moves last_success_at: not worth a write each time */
		if (!sr->health.up ||
			now >= sr->health_saved_at + HEALTH_SAVE_INTERVAL_MS * 1000)
		{
			health_save(sr->target->server_name, &sr->health);
			sr->health_saved_at = now;
		}
		sr->uncommitted = 0;
		delivered_batch_save(sr->delivered);
	}
	queue_store_close(run->store);
	run->store = NULL;
	if (run->pushed_snapshot)
		PopActiveSnapshot();
	run->pushed_snapshot = false;

	run->hooks->commit(run->hooks->arg);

	run->generation++;			/* the row locks went with the transaction */
	release_ended(run);
	look_again_after_commit(run);
	run->mover = false;			/* its lock went with the transaction */
	take_deliverer_lock();
	PushActiveSnapshot(GetTransactionSnapshot());
	run->pushed_snapshot = true;
	old = MemoryContextSwitchTo(run->mcxt);		/* not the loop's context */
	run->store = queue_store_open();
	MemoryContextSwitchTo(old);
}

static bool
server_idle(ServerRun *sr)
{
	if (sr->in_flight > 0)
		return false;
	if (!sr->health.up)
		return sr->exhausted || !health_probe_due(&sr->health, GetCurrentTimestamp());
	return sr->exhausted && sr->claimed == NIL;
}

static void
report_progress(DeliverRun *run, TimestampTz started_at)
{
	int64		delivered = 0,
				retried = 0,
				failed = 0;
	double		seconds = (GetCurrentTimestamp() - started_at) / (double) USECS_PER_SEC;
	ListCell   *lc;

	foreach(lc, run->servers)
	{
		ServerRun  *sr = lfirst(lc);

		delivered += sr->counts.delivered;
		retried += sr->counts.retried;
		failed += sr->counts.failed;
	}
	ereport(NOTICE,
			(errmsg("campus_sync: delivered " INT64_FORMAT ", retried " INT64_FORMAT ", failed " INT64_FORMAT " in %.0f s (%.0f per second)",
					delivered, retried, failed, seconds, seconds > 0 ? delivered / seconds : 0)));
}

/*
 * New items came (the worker was woken): servers that had nothing due are
 * asked again.
 */
static void
look_again_if_woken(DeliverRun *run)
{
	if (run->hooks != NULL && run->hooks->woken != NULL &&
		run->hooks->woken(run->hooks->arg))
	{
		run->inbox_unread = true;
		look_again(run);
	}
}

/* How long the loop may wait for answers: POLL_MS, or until a pace allows. */
static int
wait_ms(DeliverRun *run)
{
	int64		us;

	if (run->pace_at == 0)
		return POLL_MS;
	us = run->pace_at - GetCurrentTimestamp();
	return (int) Max(1, Min(POLL_MS, us / 1000 + 1));
}

/*
 * Is the finished transfer's owner one of this run's items in flight?  A
 * transfer of someone else's may be finished too: a set-returning
 * look-up (row_lookup.c) keeps its own in flight while the caller's query
 * runs, and that query may call deliver().  Its owner sees it done.
 */
static bool
run_owns(DeliverRun *run, void *owner)
{
	ListCell   *lc;

	foreach(lc, run->servers)
	{
		dlist_iter	iter;

		dlist_foreach(iter, &((ServerRun *) lfirst(lc))->flying)
			if ((void *) dlist_container(DeliverItem, node, iter.cur) == owner)
				return true;
	}
	return false;
}

static bool
anything_in_flight(DeliverRun *run)
{
	ListCell   *lc;

	foreach(lc, run->servers)
		if (((ServerRun *) lfirst(lc))->in_flight > 0)
			return true;
	return false;
}

static void
run_loop(DeliverRun *run, bool report)
{
	TimestampTz started_at = GetCurrentTimestamp();
	TimestampTz next_report = started_at + PROGRESS_INTERVAL_S * USECS_PER_SEC;
	MemoryContext loop_cxt = AllocSetContextCreate(run->mcxt, "campus_sync deliver loop",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(loop_cxt);

	for (;;)
	{
		ListCell   *lc;
		HttpTransfer *t;
		bool		busy = false;

		CHECK_FOR_INTERRUPTS();
		look_again_if_woken(run);
		run->pace_at = 0;
		foreach(lc, run->servers)
		{
			ServerRun  *sr = lfirst(lc);

			if (!stopping(run))
				fill(run, sr);
			if (sr->in_flight > 0 || (!stopping(run) && !server_idle(sr)))
				busy = true;
		}
		if (!busy)
			break;

		/* nothing in flight to wait for: only the pace (else the loop spins) */
		if (run->pace_at != 0 && !anything_in_flight(run))
			pace_sleep_until(run->pace_at);
		else
			http_wait(wait_ms(run));
		while ((t = http_next_done()) != NULL)
		{
			DeliverItem *item = (DeliverItem *) t->owner;

			if (!run_owns(run, t->owner))
				continue;
			MemoryContextSwitchTo(item->mcxt);
			job_step(&item->job);
			MemoryContextSwitchTo(loop_cxt);
			if (item->job.outcome != JOB_RUNNING)
				complete_item(run, item);
		}
		if (commit_due(run))
			commit_batch(run);

		if (report && GetCurrentTimestamp() >= next_report)
		{
			report_progress(run, started_at);
			next_report += PROGRESS_INTERVAL_S * USECS_PER_SEC;
		}
		MemoryContextReset(loop_cxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(loop_cxt);
}

/* Holds the deliverer lock until the transaction ends. */
static void
take_deliverer_lock(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, DELIVERER_LOCK_CLASS,
						 DELIVERER_LOCK_OBJID, DELIVERER_LOCK_SUBID);
	(void) LockAcquire(&tag, ShareLock, false, false);
}

/*
 * Does this run end with a purge of the delivered items kept long enough?
 * It scans the queue: a caller that runs again and again (the worker)
 * purges at most every PURGE_INTERVAL_S.
 */
static bool
purge_due(DeliverRun *run)
{
	static TimestampTz last_purge_at = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (continuous(run) && now < last_purge_at + PURGE_INTERVAL_S * USECS_PER_SEC)
		return false;
	last_purge_at = now;
	return true;
}

static void
purge_delivered(ServerRun *sr)
{
	Datum		args[2];
	Oid			types[2] = {OIDOID, TIMESTAMPTZOID};

	if (purge_plan == NULL)
	{
		purge_plan = SPI_prepare("DELETE FROM campus_sync.queue_items "
								 "WHERE server_oid = $1 AND state = 'delivered' AND delivered_at < $2",
								 2, types);
		if (purge_plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(purge_plan);
	}

	args[0] = ObjectIdGetDatum(sr->target->server_oid);
	args[1] = TimestampTzGetDatum(GetCurrentTimestamp() -
								  (int64) campus_sync_keep_delivered * USECS_PER_SEC);
	if (SPI_execute_plan(purge_plan, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not purge delivered campus_sync queue items");
}

/*
 * Items restored from a dump or carried over by pg_upgrade name their
 * server by an OID of the old database: bound by name first (see
 * campus_sync.bind_restored_items(), which looks once per database copy).
 * Asked once per backend and installation of the extension.
 */
static void
bind_restored_items(void)
{
	static Oid	asked_for = InvalidOid;
	Oid			installation = queue_relation_oid("items_bound_in");

	if (installation == asked_for)
		return;
	if (SPI_execute("SELECT campus_sync.bind_restored_items()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not bind restored campus_sync queue items");
	asked_for = installation;
}

/* Lets go of every person this run holds (advisory locks outlive errors). */
static void
release_all(DeliverRun *run)
{
	ListCell   *lc;

	release_ended(run);
	foreach(lc, run->servers)
	{
		ServerRun  *sr = lfirst(lc);
		ListCell   *ic;
		dlist_iter	iter;

		foreach(ic, sr->claimed)
			queue_person_unlock(sr->target->server_oid,
								((DeliverItem *) lfirst(ic))->person_lock);
		dlist_foreach(iter, &sr->flying)
			queue_person_unlock(sr->target->server_oid,
								dlist_container(DeliverItem, node, iter.cur)->person_lock);
	}
}

/*
 * deliver_run
 *		Delivers due items of the given servers until nothing is due, the
 *		time is up or max_items (0: no limit) have been started.  The caller
 *		has connected to SPI.  hooks (may be NULL) commit the current
 *		transaction and start a new one, and tell when new items came.
 *		Returns a DeliverCounts per server.
 */
List *
deliver_run(List *server_oids, double max_seconds, int64 max_items,
			bool report_progress, const DeliverHooks *hooks)
{
	/* outlives the transactions a commit function ends */
	MemoryContext mcxt = AllocSetContextCreate(TopMemoryContext, "campus_sync deliver",
											   ALLOCSET_DEFAULT_SIZES);
	DeliverRun *run = MemoryContextAllocZero(mcxt, sizeof(DeliverRun));
	List	   *counts = NIL;
	ListCell   *lc;

	run->mcxt = mcxt;
	run->settle_cxt = AllocSetContextCreate(mcxt, "campus_sync settle", ALLOCSET_SMALL_SIZES);
	run->claim_cxt = AllocSetContextCreate(mcxt, "campus_sync claim", ALLOCSET_DEFAULT_SIZES);
	run->max_items = max_items;
	run->deadline = GetCurrentTimestamp() + (int64) (max_seconds * USECS_PER_SEC);
	run->hooks = hooks;
	run->inbox_unread = true;

	PG_TRY();
	{
		take_deliverer_lock();
		bind_restored_items();
		queue_buffer_flush();	/* this transaction's own queued items too */
		run->store = queue_store_open();
		foreach(lc, server_oids)
		{
			ServerRun  *sr = MemoryContextAllocZero(run->mcxt, sizeof(ServerRun));
			MemoryContext old = MemoryContextSwitchTo(run->mcxt);

			dlist_init(&sr->flying);
			sr->target = target_load_oid(lfirst_oid(lc));
			sr->counts.server = sr->target->server_name;
			health_load(sr->target->server_name, &sr->health);
			sr->delivered = delivered_batch_create(sr->target->server_oid, run->mcxt);
			run->servers = lappend(run->servers, sr);
			MemoryContextSwitchTo(old);
		}

		run_loop(run, report_progress);
		queue_store_close(run->store);
		run->store = NULL;

		foreach(lc, run->servers)
		{
			ServerRun  *sr = lfirst(lc);
			DeliverCounts *c = palloc(sizeof(DeliverCounts));

			health_save(sr->target->server_name, &sr->health);
			delivered_batch_save(sr->delivered);
			if (purge_due(run))
				purge_delivered(sr);
			*c = sr->counts;
			c->server = pstrdup(sr->counts.server);
			counts = lappend(counts, c);
		}
		if (run->pushed_snapshot)
			PopActiveSnapshot();
		/* the last outcomes are committed with the caller's transaction */
		release_all(run);
	}
	PG_CATCH();
	{
		/* relations go with the transaction; transfers and persons are ours */
		http_free_all();
		release_all(run);
		MemoryContextDelete(mcxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextDelete(mcxt);
	return counts;
}
