/*-------------------------------------------------------------------------
 *
 * pace.c
 *	  The pace of requests to a target: the server option max_rate
 *	  (requests per second) and a 429's Retry-After, which holds back the
 *	  whole target, not only the item that got it.
 *
 *	  Each request takes the next slot, 1/max_rate seconds after the one
 *	  before; a request may start once its slot has come.  The slots are
 *	  in shared memory when campus_sync is preloaded, so every backend and
 *	  the worker share a target's rate; otherwise each backend keeps its
 *	  own (and the rate is per backend).  Losing a slot's state (a full
 *	  table, a restart) only forgets the pace for a moment.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "pace.h"
#include "shmem.h"

#define PACE_ENTRIES 128

typedef struct PaceSlot
{
	Oid			database;
	Oid			server;			/* InvalidOid: free */
	TimestampTz next_at;		/* the next request's slot */
	TimestampTz blocked_until;	/* a 429's Retry-After */
	TimestampTz touched_at;		/* the least recent goes first when full */
} PaceSlot;

typedef struct PaceTable
{
	LWLock	   *lock;			/* NULL: this backend's own table */
	PaceSlot	slots[PACE_ENTRIES];
} PaceTable;

static PaceTable *shared_table = NULL;
static uint32 pace_wait_event = 0;
static PaceTable local_table;

static void
init_table(void *part, LWLock *lock)
{
	((PaceTable *) part)->lock = lock;
}

/* At preload: the slots go to shared memory. */
void
pace_request_shmem(void)
{
	shmem_part_add("campus_sync pace", sizeof(PaceTable), true,
				   (void **) &shared_table, init_table);
}

static PaceTable *
table_lock(LWLockMode mode)
{
	PaceTable  *table = shared_table ? shared_table : &local_table;

	if (table->lock)
		LWLockAcquire(table->lock, mode);
	return table;
}

static void
table_unlock(PaceTable *table)
{
	if (table->lock)
		LWLockRelease(table->lock);
}

/*
 * The slot of the server in this database; when it has none and create,
 * a free one, else the one touched least recently.
 */
static PaceSlot *
find_slot(PaceTable *table, Oid server, bool create, TimestampTz now)
{
	PaceSlot   *reuse = NULL;

	for (int i = 0; i < PACE_ENTRIES; i++)
	{
		PaceSlot   *s = &table->slots[i];

		if (s->server == server && s->database == MyDatabaseId)
			return s;
		if (reuse == NULL ||
			(reuse->server != InvalidOid &&
			 (s->server == InvalidOid || s->touched_at < reuse->touched_at)))
			reuse = s;
	}
	if (!create)
		return NULL;
	memset(reuse, 0, sizeof(PaceSlot));
	reuse->database = MyDatabaseId;
	reuse->server = server;
	reuse->touched_at = now;
	return reuse;
}

static bool
paced(SyncTarget *target)
{
	return target->max_rate > 0;
}

/* When may the next request to the target start?  At or before now: now. */
TimestampTz
pace_next_start(SyncTarget *target)
{
	TimestampTz now = GetCurrentTimestamp();
	PaceTable  *table = table_lock(LW_SHARED);
	PaceSlot   *s = find_slot(table, target->server_oid, false, now);
	TimestampTz at = 0;

	if (s != NULL)
		at = Max(s->blocked_until, paced(target) ? s->next_at : 0);
	table_unlock(table);
	return at;
}

/* Takes the next slot: the one after it comes 1/max_rate later. */
static void
take_slot(PaceSlot *s, SyncTarget *target, TimestampTz now)
{
	s->next_at = Max(s->next_at, now) + (int64) (USECS_PER_SEC / (double) target->max_rate);
	s->touched_at = now;
}

/*
 * pace_take
 *		May a request to the target start now?  If so its slot is taken,
 *		in the same critical section as the check (two backends must not
 *		both see the same free slot); if not, *at says when to ask again.
 */
bool
pace_take(SyncTarget *target, TimestampTz *at)
{
	TimestampTz now = GetCurrentTimestamp();
	PaceTable  *table;
	PaceSlot   *s;
	bool		allowed;

	*at = pace_next_start(target);
	if (*at > now)
		return false;
	if (!paced(target))
		return true;			/* only a 429 holds it back, and none does */
	table = table_lock(LW_EXCLUSIVE);
	s = find_slot(table, target->server_oid, true, now);
	*at = Max(s->blocked_until, s->next_at);
	allowed = *at <= now;
	if (allowed)
		take_slot(s, target, now);
	table_unlock(table);
	return allowed;
}

/*
 * A later request of a job starts now (CloudCard's create after the
 * update's 404): it takes the next slot without waiting for it, and the
 * next job waits for it instead.
 */
void
pace_take_now(SyncTarget *target)
{
	TimestampTz now;
	PaceTable  *table;

	if (!paced(target))
		return;
	now = GetCurrentTimestamp();
	table = table_lock(LW_EXCLUSIVE);
	take_slot(find_slot(table, target->server_oid, true, now), target, now);
	table_unlock(table);
}

/* The target answered 429 with Retry-After: nothing starts before it ends. */
void
pace_block(SyncTarget *target, double seconds)
{
	TimestampTz now = GetCurrentTimestamp();
	PaceTable  *table;
	PaceSlot   *s;

	seconds = Min(seconds, (double) target->retry_max_delay_s);
	if (seconds <= 0)
		return;
	table = table_lock(LW_EXCLUSIVE);
	s = find_slot(table, target->server_oid, true, now);
	s->blocked_until = Max(s->blocked_until, now + (int64) (seconds * USECS_PER_SEC));
	s->touched_at = now;
	table_unlock(table);
}

/*
 * Sleeps, interruptibly, until at (a second at most: the caller looks
 * again), or until the latch is set (the worker is woken).
 */
void
pace_sleep_until(TimestampTz at)
{
	long		ms = (long) ((at - GetCurrentTimestamp()) / 1000) + 1;

	if (ms <= 0)
		return;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Min(ms, 1000L), cs_wait_event(&pace_wait_event, "CampusSyncPace"));
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Waits, interruptibly, until a request to the target may start; takes its slot. */
void
pace_wait(SyncTarget *target)
{
	TimestampTz at;

	while (!pace_take(target, &at))
	{
		long		ms = (long) ((at - GetCurrentTimestamp()) / 1000) + 1;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(ms, 1000L), cs_wait_event(&pace_wait_event, "CampusSyncPace"));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
