/*-------------------------------------------------------------------------
 *
 * queue_claim.c
 *	  The deliverer's side of the queue, without SPI or the planner (their
 *	  plans depended on statistics a fresh queue does not have): claiming
 *	  due items in id order, as SELECT ... FOR UPDATE SKIP LOCKED would,
 *	  and writing what became of them.
 *
 *	  An item is due when it waits (pending or retrying), its time has come
 *	  and no older item of the same person waits: items of a person go out
 *	  one at a time, in order.  An item another deliverer holds is skipped;
 *	  one this run holds is in the caller's held list.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"

#include "queue_store.h"

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

static TimestampTz
found_timestamp(QueueStore *store, TupleTableSlot *slot, QueueColumn col)
{
	bool		isnull;

	return DatumGetTimestampTz(slot_getattr(slot, store->attnum[col], &isnull));
}

static char *
slot_text(QueueStore *store, TupleTableSlot *slot, QueueColumn col)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, store->attnum[col], &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Is a waiting item of this person older (below_id) or newer (above_id)
 * than the given id?  Pass 0 for the side not asked about.
 */
static bool
person_waits(QueueStore *store, Snapshot snapshot, const char *server, const char *key,
			 int64 below_id, int64 above_id)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	bool		found = false;

	person_scan_keys(keys, server, key);
	scan = index_beginscan(store->rel, store->key_index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (!found && index_getnext_slot(scan, ForwardScanDirection, store->probe))
	{
		bool		isnull;
		int64		id = DatumGetInt64(slot_getattr(store->probe, store->attnum[COL_ID], &isnull));

		if (((below_id > 0 && id < below_id) || (above_id > 0 && id > above_id)) &&
			is_waiting(slot_text(store, store->probe, COL_STATE)))
			found = true;
	}
	index_endscan(scan);
	return found;
}

/* Is the tuple in slot an item that may be sent now? */
static bool
is_due(QueueStore *store, TupleTableSlot *slot, TimestampTz now)
{
	return is_waiting(slot_text(store, slot, COL_STATE)) &&
		found_timestamp(store, slot, COL_NEXT_ATTEMPT_AT) <= now;
}

/*
 * queue_claim
 *		Locks up to limit due items of server with ids above after_id and
 *		returns them (ClaimedItem, in id order).  The locks last until the
 *		transaction ends.
 */
List *
queue_claim(QueueStore *store, const char *server, int64 after_id,
			int64 *held, int nheld, int limit)
{
	Snapshot	snapshot;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	List	   *claimed = NIL;
	TimestampTz now = GetCurrentTimestamp();

	/* this run's own results are part of what the claim must see */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_NAMEEQ, name_datum(server));
	ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after_id));
	scan = index_beginscan(store->rel, store->due_index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);

	while (list_length(claimed) < limit &&
		   index_getnext_slot(scan, ForwardScanDirection, store->found))
	{
		int64		id = found_int64(store, COL_ID);
		char	   *key;
		ItemPointerData tid;
		TM_FailureData tmfd;
		ClaimedItem *item;
		bool		isnull;

		if (is_held(id, held, nheld) || !is_due(store, store->found, now))
			continue;
		key = found_text(store, COL_PERSON_KEY);
		if (key == NULL || person_waits(store, snapshot, server, key, id, 0))
			continue;

		tid = store->found->tts_tid;
		if (table_tuple_lock(store->rel, &tid, snapshot, store->probe,
							 GetCurrentCommandId(true), LockTupleNoKeyExclusive,
							 LockWaitSkip, TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
							 &tmfd) != TM_Ok)
			continue;			/* another deliverer has it, or it is gone */
		/* a newer version (an enqueuer replaced the payload) must still be due */
		if (tmfd.traversed && !is_due(store, store->probe, now))
			continue;

		item = palloc(sizeof(ClaimedItem));
		item->tid = store->probe->tts_tid;
		item->id = id;
		item->person_key = key;
		item->payload = slot_text(store, store->probe, COL_PAYLOAD);
		item->enqueued_by = pstrdup(NameStr(*DatumGetName(slot_getattr(store->probe,
																	   store->attnum[COL_ENQUEUED_BY],
																	   &isnull))));
		item->attempts = DatumGetInt32(slot_getattr(store->probe, store->attnum[COL_ATTEMPTS],
													&isnull));
		claimed = lappend(claimed, item);
	}
	index_endscan(scan);
	UnregisterSnapshot(snapshot);
	return claimed;
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
	ResetPerTupleExprContext(store->estate);
}

/* Does a later item of this person wait (so it may be due now)? */
bool
queue_has_successor(QueueStore *store, const char *server, const char *key, int64 id)
{
	Snapshot	snapshot;
	bool		result;

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	result = person_waits(store, snapshot, server, key, 0, id);
	UnregisterSnapshot(snapshot);
	return result;
}
