/*-------------------------------------------------------------------------
 *
 * queue_claim.c
 *	  The deliverer's side of the queue, without SPI or the planner (their
 *	  plans depended on statistics a fresh queue does not have): claiming
 *	  due items, as SELECT ... FOR UPDATE SKIP LOCKED would, and writing
 *	  what became of them.
 *
 *	  Claims walk the key index (person_key) person by person.
 *	  A person's newest waiting item is the one sent; it supersedes the
 *	  older ones (waiting or invalid), which are locked with it and removed
 *	  when its outcome is written: this is where a burst of changes to one
 *	  person coalesces into one request.  A person is skipped when one of
 *	  its items is held (by this run or by another deliverer, whose lock
 *	  SKIP LOCKED skips) or is not due yet: never two requests of a person
 *	  at once, and a Retry-After or backoff holds back the newer state too.
 *
 *	  A claimed person is also held by a session-level advisory lock, which
 *	  outlives the claiming transaction: a deliverer that commits outcomes
 *	  while requests are in flight (deliver_batches(), the worker) keeps
 *	  the persons it is sending to until their outcomes are committed.
 *
 *	  Nothing is claimed before the commit that queued it is on disk: with
 *	  synchronous_commit = off a transaction is visible before its commit
 *	  record is flushed, and a crash would erase a person the remote had
 *	  already been sent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_collation_d.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "lock_keys.h"
#include "queue_store.h"

/* One item of the person being looked at. */
typedef struct PersonItem
{
	ItemPointerData tid;
	int64		id;
	bool		waiting;		/* pending or retrying (else invalid) */
	TimestampTz next_attempt_at;
} PersonItem;

/* The items of one person (of the server claimed for), as the scan meets them. */
typedef struct PersonItems
{
	char	   *key;
	int			n;
	int			size;
	PersonItem *items;
} PersonItems;

static bool
is_waiting(const char *state)
{
	return strcmp(state, "pending") == 0 || strcmp(state, "retrying") == 0;
}

static bool
is_held(int64 id, int64 *held, int nheld)
{
	for (int i = 0; i < nheld; i++)
		if (held[i] == id)
			return true;
	return false;
}

static void
person_add(QueueStore *store, PersonItems *p, TupleTableSlot *slot)
{
	bool		isnull;
	PersonItem *item;

	if (p->n == p->size)
	{
		p->size = Max(8, p->size * 2);
		p->items = p->items ? repalloc(p->items, sizeof(PersonItem) * p->size) :
			palloc(sizeof(PersonItem) * p->size);
	}
	item = &p->items[p->n++];
	item->tid = slot->tts_tid;
	item->id = slot_int64(store, slot, COL_ID);
	item->waiting = is_waiting(slot_text(store, slot, COL_STATE));
	item->next_attempt_at = DatumGetTimestampTz(slot_getattr(slot, store->attnum[COL_NEXT_ATTEMPT_AT],
															 &isnull));
}


static void
person_locktag(LOCKTAG *tag, Oid server_oid, uint32 person_lock)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, person_lock, server_oid, PERSON_LOCK_SUBID);
}

/* Holds the person for this session; false when another deliverer does. */
static bool
person_lock(Oid server_oid, uint32 person_lock)
{
	LOCKTAG		tag;

	person_locktag(&tag, server_oid, person_lock);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
queue_person_unlock(Oid server_oid, uint32 person_lock)
{
	LOCKTAG		tag;

	person_locktag(&tag, server_oid, person_lock);
	LockRelease(&tag, ExclusiveLock, true);
}

/* Locks one item for this run; false when someone else holds or changed it. */
static bool
lock_item(QueueStore *store, Snapshot snapshot, ItemPointer tid)
{
	TM_FailureData tmfd;
	ItemPointerData t = *tid;

	return table_tuple_lock(store->rel, &t, snapshot, store->probe,
							GetCurrentCommandId(true), LockTupleNoKeyExclusive,
							LockWaitSkip, 0, &tmfd) == TM_Ok;
}

/*
 * Decides for the person gathered in p: NULL, or the newest waiting item
 * (locked, with the older items it supersedes, locked as well).
 */
static ClaimedItem *
claim_person(QueueStore *store, Oid server_oid, Snapshot snapshot, PersonItems *p,
			 int64 *held, int nheld, TimestampTz now, XLogRecPtr *max_lsn)
{
	int			newest = -1;
	ClaimedItem *claimed;
	bool		isnull;
	uint32		lock_key;
	char	   *kind;

	for (int i = 0; i < p->n; i++)
	{
		if (!p->items[i].waiting)
			continue;
		if (is_held(p->items[i].id, held, nheld) || p->items[i].next_attempt_at > now)
			return NULL;		/* in flight here, or held back by a backoff */
		if (newest < 0 || p->items[i].id > p->items[newest].id)
			newest = i;
	}
	if (newest < 0)
		return NULL;

	/* the person, then its newest item: if another deliverer holds either, skip */
	lock_key = hash_bytes((const unsigned char *) p->key, strlen(p->key));
	if (!person_lock(server_oid, lock_key))
		return NULL;
	if (!lock_item(store, snapshot, &p->items[newest].tid))
	{
		queue_person_unlock(server_oid, lock_key);
		return NULL;
	}
	note_commit_lsn(store->probe, max_lsn);

	claimed = palloc0(sizeof(ClaimedItem));
	claimed->tid = p->items[newest].tid;
	claimed->id = p->items[newest].id;
	claimed->person_key = p->key;
	claimed->person_lock = lock_key;
	claimed->enqueued_by = slot_text(store, store->probe, COL_ENQUEUED_BY);
	claimed->service = slot_text(store, store->probe, COL_SERVICE);
	claimed->key_field = slot_text(store, store->probe, COL_KEY_FIELD);
	kind = slot_text(store, store->probe, COL_KIND);
	claimed->disable = kind != NULL && strcmp(kind, "disable") == 0;
	claimed->attempts = DatumGetInt32(slot_getattr(store->probe, store->attnum[COL_ATTEMPTS],
												   &isnull));
	claimed->superseded_tids = palloc(sizeof(ItemPointerData) * p->n);
	claimed->superseded_ids = palloc(sizeof(int64) * p->n);

	for (int i = 0; i < p->n; i++)
	{
		if (i == newest || p->items[i].id > claimed->id)
			continue;			/* a newer invalid item stays for the DBA */
		if (!lock_item(store, snapshot, &p->items[i].tid))
		{
			if (p->items[i].waiting)
			{
				/* held elsewhere: leave the person for now */
				queue_person_unlock(server_oid, lock_key);
				return NULL;
			}
			continue;			/* an invalid item someone else is at */
		}
		claimed->superseded_tids[claimed->nsuperseded] = p->items[i].tid;
		claimed->superseded_ids[claimed->nsuperseded++] = p->items[i].id;
	}
	return claimed;
}

/*
 * queue_claim
 *		Locks up to limit persons' newest due items of server, from the
 *		cursor on, and returns them (ClaimedItem).  The locks last until the
 *		transaction ends.  The cursor moves past the last person claimed.
 */
List *
queue_claim(QueueStore *store, Oid server_oid, ClaimCursor *cursor,
			int64 *held, int nheld, int limit)
{
	Snapshot	snapshot;
	ScanKeyData keys[2];
	int			nkeys = 0;
	IndexScanDesc scan;
	List	   *claimed = NIL;
	TimestampTz now = GetCurrentTimestamp();
	PersonItems person = {0};
	bool		more = true;
	XLogRecPtr	max_lsn = InvalidXLogRecPtr;

	/* this run's own results are part of what the claim must see */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	server_scan_key(&keys[nkeys++], server_oid);
	if (cursor->person_key)
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 2,
							   cursor->inclusive ? BTGreaterEqualStrategyNumber : BTGreaterStrategyNumber,
							   InvalidOid, C_COLLATION_OID,
							   cursor->inclusive ? F_TEXT_GE : F_TEXT_GT,
							   CStringGetTextDatum(cursor->person_key));
	scan = cs_index_beginscan(store->rel, store->key_index, snapshot, nkeys);
	index_rescan(scan, keys, nkeys, NULL, 0);

	while (list_length(claimed) < limit && more)
	{
		char	   *key = NULL;

		more = index_getnext_slot(scan, ForwardScanDirection, store->found);
		if (more)
		{
			key = slot_text(store, store->found, COL_PERSON_KEY);
			if (key == NULL)
				continue;		/* an invalid row without a key */
			if (slot_oid(store, store->found, COL_SERVER_OID) != server_oid)
				continue;		/* another server's item */
		}
		/* a person's items are all seen: decide for the person */
		if (person.key && (key == NULL || strcmp(key, person.key) != 0))
		{
			ClaimedItem *c = claim_person(store, server_oid, snapshot, &person, held, nheld,
										  now, &max_lsn);

			if (c)
			{
				claimed = lappend(claimed, c);
				cursor->person_key = person.key;
				cursor->inclusive = false;
			}
			person.n = 0;
			person.key = NULL;
		}
		if (key)
		{
			person.key = key;
			person_add(store, &person, store->found);
		}
	}
	index_endscan(scan);
	ExecClearTuple(store->found);
	ExecClearTuple(store->probe);
	UnregisterSnapshot(snapshot);
	if (max_lsn != InvalidXLogRecPtr)
		XLogFlush(max_lsn);
	return claimed;
}

/* The payload of an item this transaction holds, in the current context. */
char *
queue_fetch_payload(QueueStore *store, ItemPointer tid)
{
	char	   *payload;

	if (!table_tuple_fetch_row_version(store->rel, tid, SnapshotAny, store->probe))
		elog(ERROR, "campus_sync queue item at (%u,%u) vanished while held",
			 ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid));
	payload = slot_text(store, store->probe, COL_PAYLOAD);
	ExecClearTuple(store->probe);
	return payload;
}

/*
 * Is the row at tid, claimed in an earlier transaction, still the item's
 * current version?  Unlike queue_relock it writes nothing: a claimed item
 * about to be sent needs only this (its outcome locks it again).
 */
bool
queue_row_current(QueueStore *store, ItemPointer tid)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	bool		current = table_tuple_fetch_row_version(store->rel, tid, snapshot, store->probe);

	ExecClearTuple(store->probe);
	UnregisterSnapshot(snapshot);
	return current;
}

/*
 * Locks again, in a new transaction, an item whose request is in flight;
 * false when its row changed meanwhile (its outcome is then not recorded).
 */
bool
queue_relock(QueueStore *store, ItemPointer tid)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	bool		locked = lock_item(store, snapshot, tid);

	ExecClearTuple(store->probe);
	UnregisterSnapshot(snapshot);
	return locked;
}

/* Writes an attempt's outcome to the item this transaction holds at tid. */
void
queue_record(QueueStore *store, ItemPointer tid, ItemOutcome *o)
{
	if (!table_tuple_fetch_row_version(store->rel, tid, SnapshotAny, store->found))
		elog(ERROR, "campus_sync queue item at (%u,%u) vanished while held",
			 ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid));
	copy_found_to_row(store);
	ROW_SET(store, COL_STATE, CStringGetTextDatum(o->state));
	ROW_SET(store, COL_ATTEMPTS, Int32GetDatum(o->attempts));
	ROW_SET(store, COL_NEXT_ATTEMPT_AT, TimestampTzGetDatum(o->next_attempt_at));
	if (o->http_status > 0)
		ROW_SET(store, COL_LAST_HTTP_STATUS, Int32GetDatum(o->http_status));
	else
		ROW_SET_NULL(store, COL_LAST_HTTP_STATUS);
	text_or_null(store, COL_LAST_ERROR, o->error);
	if (o->remote_id)
		ROW_SET(store, COL_REMOTE_ID, CStringGetTextDatum(o->remote_id));
	if (o->delivered_at != 0)
		ROW_SET(store, COL_DELIVERED_AT, TimestampTzGetDatum(o->delivered_at));
	update_row(store, tid);
	ExecClearTuple(store->found);
}

/* Removes a superseded item this transaction holds at tid. */
void
queue_remove(QueueStore *store, ItemPointer tid)
{
	simple_table_tuple_delete(store->rel, tid, GetActiveSnapshot());
}

/* Does a later item of this person wait (so that it may be due now)? */
bool
queue_has_successor(QueueStore *store, Oid server_oid, const char *key, int64 id)
{
	Snapshot	snapshot;
	ScanKeyData scankeys[2];
	IndexScanDesc scan;
	bool		found = false;

	/*
	 * No CommandCounterIncrement: the later items it looks for were moved
	 * in by earlier commands, and the claims after a move increment it.
	 * One per settled item gave each item's update a command id of its
	 * own, and deliver(), which moves and delivers in one transaction, a
	 * combo command id per item (about 50 bytes, kept to the end of the
	 * transaction: 53 MB across a million deliveries).
	 */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	person_scan_key(scankeys, server_oid, key);
	scan = cs_index_beginscan(store->rel, store->key_index, snapshot, 2);
	index_rescan(scan, scankeys, 2, NULL, 0);
	while (!found && index_getnext_slot(scan, ForwardScanDirection, store->probe))
		found = slot_int64(store, store->probe, COL_ID) > id &&
			is_waiting(slot_text(store, store->probe, COL_STATE)) &&
			slot_oid(store, store->probe, COL_SERVER_OID) == server_oid;
	index_endscan(scan);
	ExecClearTuple(store->probe);
	UnregisterSnapshot(snapshot);
	return found;
}
