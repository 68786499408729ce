/*-------------------------------------------------------------------------
 *
 * inbox.c
 *	  Appending to campus_sync.inbox, and taking from it.
 *
 *	  Appends happen in the writer's transaction (a rollback takes them
 *	  along), with ids from the queue's sequence.  Taking locks the rows
 *	  it returns (SKIP LOCKED: two deliverers never take the same row) and
 *	  the caller removes them in the same transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/sequence.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "inbox.h"
#include "worker_state.h"

typedef enum InboxColumn
{
	IN_ID,
	IN_SERVER,
	IN_PERSON_KEY,
	IN_PAYLOAD,
	IN_ERROR,
	IN_ENQUEUED_BY,
	IN_ENQUEUED_AT,
	IN_SERVER_OID,
	IN_SERVICE,
	IN_KEY_FIELD,
	IN_KIND,
	N_INBOX_COLUMNS
} InboxColumn;

static const char *const inbox_column_names[N_INBOX_COLUMNS] = {
	"id", "server", "person_key", "payload", "error", "enqueued_by", "enqueued_at",
	"server_oid", "service", "key_field", "kind"
};

/* Items appended per multi-insert. */
#define INBOX_BATCH 1000

/* What the backend keeps of the inbox between uses. */
typedef struct InboxShape
{
	bool		valid;
	MemoryContext mcxt;
	Oid			rel_oid;
	Oid			seq_oid;
	TupleDesc	desc;			/* a copy: slots do not pin the relcache's */
	AttrNumber	attnum[N_INBOX_COLUMNS];
	TupleTableSlot **slots;		/* INBOX_BATCH virtual slots */
} InboxShape;

static InboxShape shape;
static bool callback_registered = false;

static void
forget_shape(Datum arg, Oid relid)
{
	(void) arg;
	if (!OidIsValid(relid) || relid == shape.rel_oid || relid == shape.seq_oid)
		shape.valid = false;
}

static Relation
open_inbox(void)
{
	Relation	rel;
	MemoryContext old;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_shape, (Datum) 0);
		callback_registered = true;
	}
	rel = table_open(shape.valid ? shape.rel_oid : queue_relation_oid("inbox"),
					 RowExclusiveLock);
	if (shape.valid && shape.rel_oid == RelationGetRelid(rel))
		return rel;

	if (shape.mcxt)
		MemoryContextDelete(shape.mcxt);
	memset(&shape, 0, sizeof(shape));
	shape.mcxt = AllocSetContextCreate(CacheMemoryContext, "campus_sync inbox shape",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(shape.mcxt);
	shape.rel_oid = RelationGetRelid(rel);
	shape.seq_oid = queue_relation_oid("queue_items_id_seq");
	/* with its constraints: a column added by an upgrade reads its default */
	shape.desc = CreateTupleDescCopyConstr(RelationGetDescr(rel));
	find_columns(shape.desc, inbox_column_names, N_INBOX_COLUMNS, shape.attnum, "inbox");
	shape.slots = palloc(sizeof(TupleTableSlot *) * INBOX_BATCH);
	for (int i = 0; i < INBOX_BATCH; i++)
		shape.slots[i] = MakeSingleTupleTableSlot(shape.desc, &TTSOpsVirtual);
	MemoryContextSwitchTo(old);
	shape.valid = true;
	return rel;
}

/*
 * The next item id.  The trigger takes it when the row changes, so that a
 * transaction's items are numbered in the order it queued them, whether
 * they are written at once (from a subtransaction) or at commit.
 */
int64
inbox_next_id(void)
{
	if (!shape.valid)
		table_close(open_inbox(), NoLock);
	return nextval_internal(shape.seq_oid, false);
}

/*
 * A service or key field name as a text datum, made once: every item
 * carries one of a handful, and the trigger's path is worth the saving.
 */
static Datum
name_datum(const char *name)
{
	static struct
	{
		char		name[NAMEDATALEN];
		Datum		datum;
	}			known[8];
	static int	nknown = 0;

	for (int i = 0; i < nknown; i++)
		if (strcmp(known[i].name, name) == 0)
			return known[i].datum;
	if (nknown == lengthof(known) || strlen(name) >= NAMEDATALEN)
		return CStringGetTextDatum(name);
	strlcpy(known[nknown].name, name, NAMEDATALEN);
	known[nknown].datum = PointerGetDatum(MemoryContextAlloc(TopMemoryContext,
															 VARHDRSZ + strlen(name)));
	SET_VARSIZE(DatumGetPointer(known[nknown].datum), VARHDRSZ + strlen(name));
	memcpy(VARDATA(DatumGetPointer(known[nknown].datum)), name, strlen(name));
	return known[nknown++].datum;
}

static int64
fill(TupleTableSlot *slot, QueueRow *r, TimestampTz now)
{
	int64		id = r->id ? r->id : inbox_next_id();

#define SET(col, datum) \
	(slot->tts_values[shape.attnum[col] - 1] = (datum), slot->tts_isnull[shape.attnum[col] - 1] = false)

	ExecClearTuple(slot);
	for (int i = 0; i < slot->tts_tupleDescriptor->natts; i++)
		slot->tts_isnull[i] = true;
	SET(IN_ID, Int64GetDatum(id));
	SET(IN_SERVER, CStringGetTextDatum(r->server));
	if (r->person_key)
		SET(IN_PERSON_KEY, CStringGetTextDatum(r->person_key));
	if (r->payload)
		SET(IN_PAYLOAD, CStringGetTextDatum(r->payload));
	if (r->error)
		SET(IN_ERROR, CStringGetTextDatum(r->error));
	SET(IN_ENQUEUED_BY, CStringGetTextDatum(r->enqueued_by));
	SET(IN_ENQUEUED_AT, TimestampTzGetDatum(now));
	SET(IN_SERVER_OID, ObjectIdGetDatum(r->server_oid));
	SET(IN_SERVICE, name_datum(r->service));
	SET(IN_KEY_FIELD, name_datum(r->key_field));
	SET(IN_KIND, name_datum(r->kind ? r->kind : "upsert"));
#undef SET
	ExecStoreVirtualTuple(slot);
	return id;
}

/* Appends one item; returns its id (the row's, or the next one). */
int64
inbox_put(QueueRow *row)
{
	Relation	rel = open_inbox();
	int64		id = fill(shape.slots[0], row, GetCurrentTransactionStartTimestamp());

	table_tuple_insert(rel, shape.slots[0], GetCurrentCommandId(true), 0, NULL);
	ExecClearTuple(shape.slots[0]);
	table_close(rel, NoLock);
	worker_wake_at_commit();
	return id;
}

/* Items from which a write goes through a bulk-insert state (see below). */
#define INBOX_BULK_FROM 64

/*
 * Appends many items, in the order given, in multi-insert batches.  A
 * bulk-insert state (a ring of buffers, so that a large load does not push
 * everything else out of shared buffers) only for many: setting one up
 * costs more than a single-row commit's whole write.
 */
void
inbox_put_many(QueueRow *rows, int n)
{
	Relation	rel = open_inbox();
	BulkInsertState bistate = n >= INBOX_BULK_FROM ? GetBulkInsertState() : NULL;
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
													"campus_sync inbox batch",
													ALLOCSET_DEFAULT_SIZES);
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	for (int done = 0; done < n; done += INBOX_BATCH)
	{
		int			count = Min(INBOX_BATCH, n - done);
		MemoryContext old = MemoryContextSwitchTo(batch_cxt);

		for (int i = 0; i < count; i++)
			(void) fill(shape.slots[i], &rows[done + i], now);
		table_multi_insert(rel, shape.slots, count, GetCurrentCommandId(true), 0, bistate);
		for (int i = 0; i < count; i++)
			ExecClearTuple(shape.slots[i]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
	}
	if (bistate)
		FreeBulkInsertState(bistate);
	MemoryContextDelete(batch_cxt);
	table_close(rel, NoLock);
	worker_wake_at_commit();
}

static char *
text_of(TupleTableSlot *slot, InboxColumn col)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, shape.attnum[col], &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Rows handed to the caller at a time: at most this many, and no more
 * payload bytes than this (a payload may be megabytes).
 */
#define DRAIN_BATCH 1000
#define DRAIN_BATCH_BYTES (8 * 1024 * 1024)

/*
 * inbox_drain
 *		Takes every committed row of the inbox, in batches: locks them
 *		(skipping any another transaction holds), hands each batch to func,
 *		then deletes them.  Returns the number taken.
 *
 *		All of them, not some: the inbox is in no order, and a person's
 *		newer state moved ahead of an older one left behind could be sent
 *		first.  The caller holds the mover lock (deliver.c), so no other
 *		deliverer drains at the same time.
 *
 *		Before it returns, the commits that queued the rows are on disk
 *		(see queue_claim.c: nothing is sent before that).
 */
int
inbox_drain(InboxBatchFunc func, void *arg)
{
	Relation	rel = open_inbox();
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TupleTableSlot *locked = table_slot_create(rel, NULL);
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
													"campus_sync inbox drain",
													ALLOCSET_DEFAULT_SIZES);
	InboxItem  *items = palloc(sizeof(InboxItem) * DRAIN_BATCH);
	int			n = 0;
	int			total = 0;
	Size		bytes = 0;
	bool		more = true;
	XLogRecPtr	max_lsn = InvalidXLogRecPtr;

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (more)
	{
		more = table_scan_getnextslot(scan, ForwardScanDirection, slot);
		if (more)
		{
			TM_FailureData tmfd;
			ItemPointerData tid = slot->tts_tid;
			InboxItem  *item;
			bool		isnull;
			MemoryContext old;

			if (table_tuple_lock(rel, &tid, snapshot, locked, GetCurrentCommandId(true),
								 LockTupleExclusive, LockWaitSkip, 0, &tmfd) != TM_Ok)
				continue;
			old = MemoryContextSwitchTo(batch_cxt);
			item = &items[n++];
			item->tid = tid;
			item->id = DatumGetInt64(slot_getattr(locked, shape.attnum[IN_ID], &isnull));
			memset(&item->row, 0, sizeof(QueueRow));
			item->row.id = item->id;
			item->row.server = text_of(locked, IN_SERVER);
			item->row.person_key = text_of(locked, IN_PERSON_KEY);
			item->row.payload = text_of(locked, IN_PAYLOAD);
			item->row.error = text_of(locked, IN_ERROR);
			item->row.enqueued_by = text_of(locked, IN_ENQUEUED_BY);
			item->row.enqueued_at = DatumGetTimestampTz(slot_getattr(locked, shape.attnum[IN_ENQUEUED_AT],
																	 &isnull));
			item->row.server_oid = DatumGetObjectId(slot_getattr(locked, shape.attnum[IN_SERVER_OID],
																 &isnull));
			item->row.service = text_of(locked, IN_SERVICE);
			item->row.key_field = text_of(locked, IN_KEY_FIELD);
			item->row.kind = text_of(locked, IN_KIND);
			if (item->row.payload)
				bytes += strlen(item->row.payload);
			MemoryContextSwitchTo(old);
			note_commit_lsn(locked, &max_lsn);
		}
		if (n == DRAIN_BATCH || bytes >= DRAIN_BATCH_BYTES || (!more && n > 0))
		{
			func(items, n, arg);
			for (int i = 0; i < n; i++)
				simple_table_tuple_delete(rel, &items[i].tid, snapshot);
			total += n;
			n = 0;
			bytes = 0;
			MemoryContextReset(batch_cxt);
		}
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	if (max_lsn != InvalidXLogRecPtr)
		XLogFlush(max_lsn);
	ExecDropSingleTupleTableSlot(slot);
	ExecDropSingleTupleTableSlot(locked);
	MemoryContextDelete(batch_cxt);
	pfree(items);
	table_close(rel, NoLock);
	return total;
}
