/*-------------------------------------------------------------------------
 *
 * sync_state.c
 *	  The delivered-state memory, campus_sync.sync_state: per server and
 *	  person key, a SHA-256 of the URL and the body the target last
 *	  acknowledged, its remote id and when.  No personal data beyond the
 *	  key.
 *
 *	  With skip_unchanged (the default), a body the target already has is
 *	  not queued -- unless an item of that person still waits, whose
 *	  delivery would leave the target with another body -- and an item that
 *	  has become identical to the last delivered body while it waited is
 *	  removed unsent by the deliverer (deliver.c).
 *
 *	  Reads are direct (a sync trigger runs as whoever writes the table,
 *	  who may not read these tables), with a snapshot taken now: whatever
 *	  the caller's isolation level, the decision is made on what has been
 *	  delivered and queued up to this moment.  Writes are one upsert a
 *	  batch, as the table's owner, in the transaction that records the
 *	  delivery: a crash loses at most what a crash would resend anyway.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "sync_state.h"

/* Deliveries written to the memory at once past this many. */
#define BATCH_MAX 1000

/* Person keys are compared on this many bytes in the in-memory sets: a
 * longer key that shares them counts as waiting, which only sends. */
#define KEY_BYTES 256

struct DeliveredBatch
{
	Oid			server_oid;
	MemoryContext mcxt;			/* the noted values; reset by each save */
	int			n;
	int			capacity;
	Datum	   *keys;
	Datum	   *hashes;
	Datum	   *remote_ids;
	bool	   *remote_id_nulls;
};

/*
 * SHA-256 of the URL and the body: a move to another URL sends anew.
 * OpenSSL's, with one context and one fetched algorithm for the backend's
 * life: PostgreSQL's pg_cryptohash makes and frees a context per call,
 * which cost a sync trigger 3.5 us a row, and EVP_sha256() looks the
 * algorithm up at every init (0.6 us a 250-byte body instead of 0.3).
 */
void
body_hash_for_url(const char *url, const char *body, uint8 *hash)
{
	static EVP_MD_CTX *ctx = NULL;
	static EVP_MD *sha256 = NULL;
	unsigned int len;

	if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (sha256 == NULL && (sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		elog(ERROR, "OpenSSL has no SHA-256");
	if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
		EVP_DigestUpdate(ctx, url, strlen(url) + 1) != 1 ||
		EVP_DigestUpdate(ctx, body, strlen(body)) != 1 ||
		EVP_DigestFinal_ex(ctx, hash, &len) != 1 || len != BODY_HASH_LEN)
		elog(ERROR, "could not compute a SHA-256 hash of a body");
}

void
body_hash(SyncTarget *target, const char *body, uint8 *hash)
{
	body_hash_for_url(target->url, body, hash);
}

/*
 * The relations looked up by name, kept until an invalidation names one
 * of them: a single-row commit looks up three, and their catalog lookups
 * were 7 % of the sync trigger's work there.  Only those found are kept:
 * an update to 0.6 creates sync_state later.
 */
#define KNOWN_RELATIONS 8

static struct
{
	const char *relname;		/* a literal */
	Oid			oid;
}			known_relations[KNOWN_RELATIONS];
static int	nknown_relations = 0;

static void
forget_known_relations(Datum arg, Oid relid)
{
	(void) arg;
	for (int i = 0; i < nknown_relations; i++)
		if (!OidIsValid(relid) || known_relations[i].oid == relid)
		{
			nknown_relations = 0;
			return;
		}
}

/* A campus_sync relation, or InvalidOid before ALTER EXTENSION UPDATE to 0.6. */
static Oid
relation_if_any(const char *relname)
{
	static bool callback_registered = false;
	Oid			schema;
	Oid			oid;

	for (int i = 0; i < nknown_relations; i++)
		if (strcmp(known_relations[i].relname, relname) == 0)
			return known_relations[i].oid;

	schema = get_namespace_oid("campus_sync", true);
	oid = OidIsValid(schema) ? get_relname_relid(relname, schema) : InvalidOid;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_known_relations, (Datum) 0);
		callback_registered = true;
	}
	if (OidIsValid(oid) && nknown_relations < KNOWN_RELATIONS)
	{
		known_relations[nknown_relations].relname = relname;
		known_relations[nknown_relations++].oid = oid;
	}
	return oid;
}

/* A snapshot of now, which sees this transaction's own writes too. */
static Snapshot
snapshot_of_now(void)
{
	CommandCounterIncrement();
	return RegisterSnapshot(GetLatestSnapshot());
}

/*
 * One index of (server_oid, person_key) -- sync_state's primary key, the
 * queue's queue_items_key -- opened once and asked person after person
 * (a rescan each: a scan begun and ended per person cost several times
 * as much).
 */
typedef struct KeyProbe
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
} KeyProbe;

static void
probe_open(KeyProbe *p, const char *relname, const char *indexname, Snapshot snapshot)
{
	p->rel = table_open(relation_if_any(relname), AccessShareLock);
	p->index = index_open(relation_if_any(indexname), AccessShareLock);
	p->scan = cs_index_beginscan(p->rel, p->index, snapshot, 2);
	p->slot = table_slot_create(p->rel, NULL);
}

/* The person's first tuple (visible to the snapshot), or NULL; then probe_next. */
static TupleTableSlot *
probe_first(KeyProbe *p, Oid server_oid, const char *person_key)
{
	ScanKeyData keys[2];

	/* the index's own column numbers: (server_oid, person_key) */
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(server_oid));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(person_key));
	index_rescan(p->scan, keys, 2, NULL, 0);
	return index_getnext_slot(p->scan, ForwardScanDirection, p->slot) ? p->slot : NULL;
}

static TupleTableSlot *
probe_next(KeyProbe *p)
{
	return index_getnext_slot(p->scan, ForwardScanDirection, p->slot) ? p->slot : NULL;
}

static void
probe_close(KeyProbe *p)
{
	index_endscan(p->scan);
	ExecDropSingleTupleTableSlot(p->slot);
	index_close(p->index, AccessShareLock);
	table_close(p->rel, AccessShareLock);
}

/*
 * Does the memory know anyone of the server?  The persons of a first load
 * are all unknown to it: one look per server spares a probe per row.
 */
static bool
knows_anyone(KeyProbe *memory, Oid server_oid, Snapshot snapshot)
{
	ScanKeyData key;
	IndexScanDesc scan = cs_index_beginscan(memory->rel, memory->index, snapshot, 1);
	bool		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(server_oid));
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, memory->slot);
	ExecClearTuple(memory->slot);
	index_endscan(scan);
	return found;
}

/* The servers a flush has asked knows_anyone() about: a few at most. */
#define KNOWN_SERVERS 8

typedef struct KnownServers
{
	int			n;
	Oid			server_oid[KNOWN_SERVERS];
	bool		knows[KNOWN_SERVERS];
} KnownServers;

static bool
memory_may_know(KnownServers *known, KeyProbe *memory, Oid server_oid, Snapshot snapshot)
{
	for (int i = 0; i < known->n; i++)
		if (known->server_oid[i] == server_oid)
			return known->knows[i];
	if (known->n == KNOWN_SERVERS)
		return true;			/* many servers: probe every row */
	known->server_oid[known->n] = server_oid;
	known->knows[known->n] = knows_anyone(memory, server_oid, snapshot);
	return known->knows[known->n++];
}

/* sync_state's columns, in its CREATE TABLE's order (0.6) */
#define SS_BODY_HASH 3
#define SS_REMOTE_ID 4
#define SS_DELIVERED_AT 5

static bool
find_in(KeyProbe *memory, Oid server_oid, const char *person_key, DeliveredState *state)
{
	TupleTableSlot *slot = probe_first(memory, server_oid, person_key);
	bool		isnull;
	bytea	   *hash;
	Datum		remote_id;

	if (slot == NULL)
		return false;
	hash = DatumGetByteaPP(slot_getattr(slot, SS_BODY_HASH, &isnull));
	if (VARSIZE_ANY_EXHDR(hash) != BODY_HASH_LEN)
		return false;
	memcpy(state->body_hash, VARDATA_ANY(hash), BODY_HASH_LEN);
	remote_id = slot_getattr(slot, SS_REMOTE_ID, &isnull);
	state->remote_id = isnull ? NULL : TextDatumGetCString(remote_id);
	state->delivered_at = DatumGetTimestampTz(slot_getattr(slot, SS_DELIVERED_AT, &isnull));
	return true;
}

/* What the memory holds of a person now; false when nothing. */
static bool
delivered_state_find(Oid server_oid, const char *person_key, DeliveredState *state)
{
	KeyProbe	memory;
	Snapshot	snapshot;
	bool		found;

	if (!OidIsValid(relation_if_any("sync_state")) || person_key == NULL)
		return false;
	/*
	 * No command counter increment (snapshot_of_now()): the memory is
	 * written only by SPI statements, which make their writes visible, and
	 * the deliverer asks once per item (see queue_has_successor()).
	 */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	probe_open(&memory, "sync_state", "sync_state_pkey", snapshot);
	found = find_in(&memory, server_oid, person_key, state);
	probe_close(&memory);
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * Has the target, as far as the memory knows, exactly this body for the
 * person now?  (The deliverer's and the push's question: nothing of the
 * person is in flight elsewhere.)  state, when given, gets what is known.
 */
bool
delivered_unchanged(SyncTarget *target, const char *person_key, const uint8 *hash,
					DeliveredState *state)
{
	DeliveredState mine;

	if (state == NULL)
		state = &mine;
	return delivered_state_find(target->server_oid, person_key, state) &&
		memcmp(state->body_hash, hash, BODY_HASH_LEN) == 0;
}

/* ---- queueing: which new rows would change nothing ---- */

typedef struct KeyEntry
{
	char		key[KEY_BYTES];	/* "<server oid>/<person key>", cut */
} KeyEntry;

static void
entry_key(char *out, Oid server_oid, const char *person_key)
{
	snprintf(out, KEY_BYTES, "%u/%s", server_oid, person_key ? person_key : "");
}

static HTAB *
key_set(const char *name, long size)
{
	HASHCTL		ctl;

	ctl.keysize = KEY_BYTES;
	ctl.entrysize = sizeof(KeyEntry);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, size, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

static bool
key_set_has(HTAB *set, Oid server_oid, const char *person_key)
{
	char		key[KEY_BYTES];

	entry_key(key, server_oid, person_key);
	return hash_search(set, key, HASH_FIND, NULL) != NULL;
}

static void
key_set_add(HTAB *set, Oid server_oid, const char *person_key)
{
	char		key[KEY_BYTES];

	entry_key(key, server_oid, person_key);
	(void) hash_search(set, key, HASH_ENTER, NULL);
}

/* Does an item of the person wait in queue_items (pending, retrying, invalid, held)? */
static bool
waits_in_queue(KeyProbe *queue, AttrNumber state_att, Oid server_oid, const char *person_key)
{
	for (TupleTableSlot *slot = probe_first(queue, server_oid, person_key); slot != NULL;
		 slot = probe_next(queue))
	{
		bool		isnull;
		char	   *state = TextDatumGetCString(slot_getattr(slot, state_att, &isnull));

		if (strcmp(state, "pending") == 0 || strcmp(state, "retrying") == 0 ||
			strcmp(state, "invalid") == 0 || strcmp(state, "held") == 0)
			return true;
	}
	return false;
}

/* The persons of the set that have an item in the inbox (one pass over it). */
static HTAB *
waiting_in_inbox(HTAB *candidates, Snapshot snapshot)
{
	static const char *const names[] = {"server_oid", "person_key"};
	Relation	inbox = table_open(relation_if_any("inbox"), AccessShareLock);
	AttrNumber	att[2];
	TableScanDesc scan;
	HeapTuple	tup;
	HTAB	   *waiting = key_set("campus_sync inbox persons", 64);

	find_columns(RelationGetDescr(inbox), names, 2, att, "inbox");
	scan = table_beginscan(inbox, snapshot, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			server_oid = DatumGetObjectId(heap_getattr(tup, att[0],
															   RelationGetDescr(inbox), &isnull));
		Datum		key = heap_getattr(tup, att[1], RelationGetDescr(inbox), &isnull);
		char	   *person_key;

		if (isnull)
			continue;
		person_key = TextDatumGetCString(key);
		if (key_set_has(candidates, server_oid, person_key))
			key_set_add(waiting, server_oid, person_key);
		pfree(person_key);
	}
	table_endscan(scan);
	table_close(inbox, AccessShareLock);
	return waiting;
}

/* Is the row's body the one the memory holds? */
static bool
row_has_body(QueueRow *row, DeliveredState *state)
{
	uint8		hash[BODY_HASH_LEN];

	body_hash_for_url(row->url, row->payload, hash);
	return memcmp(state->body_hash, hash, BODY_HASH_LEN) == 0;
}

/* Rows from which a flush first asks whether the memory knows anyone. */
#define KNOWN_CHECK_FROM 16

/*
 * queue_rows_drop_unchanged
 *		Leaves out of rows (in the order they were queued) those whose body
 *		the target already has, by the memory, when nothing of that person
 *		waits to be delivered before them: not in queue_items, not in the
 *		inbox, not earlier in rows.  Returns how many rows are left.
 *
 *		Only rows marked check_unchanged are judged.  One index probe each
 *		(none for a server whose memory is empty, for 16 rows or more), and
 *		for those whose body is unchanged, one more and a single pass over
 *		the inbox (which the deliverers keep short).
 */
int
queue_rows_drop_unchanged(QueueRow *rows, int n)
{
	static const char *const state_name[] = {"state"};
	Oid			memory_relid = relation_if_any("sync_state");
	MemoryContext cxt,
				old;
	KeyProbe	memory,
				queue;
	Snapshot	snapshot;
	bool	   *unchanged;
	int			ncandidates = 0;
	AttrNumber	state_att;
	HTAB	   *candidates,
			   *waiting,
			   *queued;
	KnownServers known = {0};
	int			kept = 0;

	if (!OidIsValid(memory_relid))
		return n;
	for (int i = 0; i < n && ncandidates == 0; i++)
		ncandidates += rows[i].check_unchanged;
	if (ncandidates == 0)
		return n;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "campus_sync unchanged rows",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	unchanged = palloc0(sizeof(bool) * n);
	snapshot = snapshot_of_now();

	/* 1. the body is the one last delivered */
	ncandidates = 0;
	probe_open(&memory, "sync_state", "sync_state_pkey", snapshot);
	for (int i = 0; i < n; i++)
	{
		DeliveredState state;

		/*
		 * Most persons of a first load are not known: hashed only if known.
		 * Many rows ask first whether their server's memory is empty.
		 */
		if (rows[i].check_unchanged && rows[i].payload != NULL && rows[i].person_key != NULL &&
			(n < KNOWN_CHECK_FROM ||
			 memory_may_know(&known, &memory, rows[i].server_oid, snapshot)) &&
			find_in(&memory, rows[i].server_oid, rows[i].person_key, &state) &&
			row_has_body(&rows[i], &state))
		{
			unchanged[i] = true;
			ncandidates++;
		}
	}
	probe_close(&memory);

	/* 2. and nothing of the person waits in the queue */
	if (ncandidates > 0)
	{
		probe_open(&queue, "queue_items", "queue_items_key", snapshot);
		find_columns(RelationGetDescr(queue.rel), state_name, 1, &state_att, "queue_items");
		candidates = key_set("campus_sync unchanged persons", ncandidates);
		for (int i = 0; i < n; i++)
		{
			if (!unchanged[i])
				continue;
			if (waits_in_queue(&queue, state_att, rows[i].server_oid, rows[i].person_key))
				unchanged[i] = false;
			else
				key_set_add(candidates, rows[i].server_oid, rows[i].person_key);
		}
		probe_close(&queue);

		/* 3. nor in the inbox, nor earlier among these rows */
		if (hash_get_num_entries(candidates) > 0)
		{
			waiting = waiting_in_inbox(candidates, snapshot);
			queued = key_set("campus_sync queued persons", 64);
			for (int i = 0; i < n; i++)
			{
				if (unchanged[i] &&
					(key_set_has(waiting, rows[i].server_oid, rows[i].person_key) ||
					 key_set_has(queued, rows[i].server_oid, rows[i].person_key)))
					unchanged[i] = false;
				if (!unchanged[i])
					key_set_add(queued, rows[i].server_oid, rows[i].person_key);
			}
		}
	}
	UnregisterSnapshot(snapshot);
	MemoryContextSwitchTo(old);

	for (int i = 0; i < n; i++)
		if (!unchanged[i])
			rows[kept++] = rows[i];
	MemoryContextDelete(cxt);
	return kept;
}

/* ---- delivering: what the memory learns ---- */

DeliveredBatch *
delivered_batch_create(Oid server_oid, MemoryContext mcxt)
{
	DeliveredBatch *batch = MemoryContextAllocZero(mcxt, sizeof(DeliveredBatch));

	batch->server_oid = server_oid;
	batch->mcxt = AllocSetContextCreate(mcxt, "campus_sync deliveries to remember",
										ALLOCSET_DEFAULT_SIZES);
	return batch;
}

/* Notes a delivery; the batch is written when full, or by the caller. */
void
delivered_batch_add(DeliveredBatch *batch, const char *person_key, const uint8 *hash,
					const char *remote_id)
{
	MemoryContext old;
	bytea	   *h;

	if (person_key == NULL)
		return;
	if (batch->n == BATCH_MAX)
		delivered_batch_save(batch);
	old = MemoryContextSwitchTo(batch->mcxt);
	if (batch->n == batch->capacity)
	{
		int			capacity = Min(BATCH_MAX, Max(16, batch->capacity * 2));
		Datum	   *keys = palloc(sizeof(Datum) * capacity);
		Datum	   *hashes = palloc(sizeof(Datum) * capacity);
		Datum	   *remote_ids = palloc(sizeof(Datum) * capacity);
		bool	   *nulls = palloc(sizeof(bool) * capacity);

		if (batch->n > 0)
		{
			memcpy(keys, batch->keys, sizeof(Datum) * batch->n);
			memcpy(hashes, batch->hashes, sizeof(Datum) * batch->n);
			memcpy(remote_ids, batch->remote_ids, sizeof(Datum) * batch->n);
			memcpy(nulls, batch->remote_id_nulls, sizeof(bool) * batch->n);
		}
		batch->keys = keys;
		batch->hashes = hashes;
		batch->remote_ids = remote_ids;
		batch->remote_id_nulls = nulls;
		batch->capacity = capacity;
	}
	h = palloc(VARHDRSZ + BODY_HASH_LEN);
	SET_VARSIZE(h, VARHDRSZ + BODY_HASH_LEN);
	memcpy(VARDATA(h), hash, BODY_HASH_LEN);
	batch->keys[batch->n] = CStringGetTextDatum(person_key);
	batch->hashes[batch->n] = PointerGetDatum(h);
	batch->remote_ids[batch->n] = remote_id ? CStringGetTextDatum(remote_id) : (Datum) 0;
	batch->remote_id_nulls[batch->n] = remote_id == NULL;
	batch->n++;
	MemoryContextSwitchTo(old);
}

static void
forget_noted(DeliveredBatch *batch)
{
	MemoryContextReset(batch->mcxt);
	batch->n = batch->capacity = 0;
	batch->keys = batch->hashes = batch->remote_ids = NULL;
	batch->remote_id_nulls = NULL;
}

static Oid
memory_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

static ArrayType *
array_of(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, elemtype, typlen, typbyval,
							  typalign);
}

/*
 * Writes the noted deliveries to the memory, as the extension's owner
 * (the caller of a push may not write it).  Not in a read-only
 * transaction (a push on a standby): the memory then stays as it was,
 * which can only make a later enqueue send.
 */
void
delivered_batch_save(DeliveredBatch *batch)
{
	static SPIPlanPtr plan = NULL;
	Oid			relid = relation_if_any("sync_state");
	Oid			saved_user;
	int			saved_context;
	Datum		args[5];
	Oid			types[5] = {OIDOID, TEXTARRAYOID, BYTEAARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID};
	MemoryContext old;

	if (batch->n == 0)
		return;
	if (!OidIsValid(relid) || XactReadOnly)
	{
		forget_noted(batch);
		return;
	}
	old = MemoryContextSwitchTo(batch->mcxt);
	args[0] = ObjectIdGetDatum(batch->server_oid);
	args[1] = PointerGetDatum(array_of(batch->keys, NULL, batch->n, TEXTOID));
	args[2] = PointerGetDatum(array_of(batch->hashes, NULL, batch->n, BYTEAOID));
	args[3] = PointerGetDatum(array_of(batch->remote_ids, batch->remote_id_nulls, batch->n,
									   TEXTOID));
	args[4] = TimestampTzGetDatum(GetCurrentTimestamp());
	MemoryContextSwitchTo(old);

	GetUserIdAndSecContext(&saved_user, &saved_context);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	SetUserIdAndSecContext(memory_owner(relid), saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (plan == NULL)
		{
			/*
			 * Prepared once: a SQL function around it was planned again at
			 * every call.  Every name qualified, argument types exact: no
			 * search_path in play.  A person delivered twice in the batch
			 * keeps the last.
			 */
			plan = SPI_prepare("INSERT INTO campus_sync.sync_state AS s "
							   "(server_oid, person_key, body_hash, remote_id, delivered_at) "
							   "SELECT DISTINCT ON (d.key) $1, d.key, d.hash, d.remote_id, $5 "
							   "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) "
							   "WITH ORDINALITY AS d(key, hash, remote_id, n) "
							   "ORDER BY d.key, d.n DESC "
							   "ON CONFLICT (server_oid, person_key) DO UPDATE "
							   "SET body_hash = EXCLUDED.body_hash, "
							   "remote_id = coalesce(EXCLUDED.remote_id, s.remote_id), "
							   "delivered_at = EXCLUDED.delivered_at",
							   5, types);
			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_keepplan(plan);
		}
		/* SPI makes what it wrote visible to the snapshots taken after */
		if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not write campus_sync.sync_state");
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
	SPI_finish();
	forget_noted(batch);
}
