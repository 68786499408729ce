/*-------------------------------------------------------------------------
 *
 * queue_store.h
 *	  Direct access to campus_sync.queue_items (no SPI, no planner): the
 *	  enqueue side (queue_store.c) and the deliverer side (queue_claim.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_QUEUE_STORE_H
#define CAMPUS_SYNC_QUEUE_STORE_H

#include "postgres.h"

#include "nodes/execnodes.h"

#include "access/skey.h"
#include "access/xlogdefs.h"
#include "common/sha2.h"
#include "executor/executor.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "payload.h"

/* Columns of campus_sync.queue_items, looked up by name. */
typedef enum QueueColumn
{
	COL_ID,
	COL_SERVER,
	COL_PERSON_KEY,
	COL_STATE,
	COL_PAYLOAD,
	COL_ENQUEUED_BY,
	COL_ATTEMPTS,
	COL_NEXT_ATTEMPT_AT,
	COL_LAST_HTTP_STATUS,
	COL_LAST_ERROR,
	COL_REMOTE_ID,
	COL_ENQUEUED_AT,
	COL_DELIVERED_AT,
	COL_SERVER_OID,
	COL_SERVICE,
	COL_KEY_FIELD,
	COL_KIND,
	N_QUEUE_COLUMNS
} QueueColumn;

/*
 * The queue opened for one use (a statement, a deliver() run): its
 * relations, locked for the transaction, and the backend's cached slots and
 * index information (see queue_store.c).
 */
typedef struct QueueStore
{
	struct QueueShape *shape;
	MemoryContext mcxt;			/* the use's allocations */
	Relation	rel;
	Relation	key_index;		/* queue_items_key (server_oid, person_key) */
	ResultRelInfo *rri;			/* its indexes, opened by the executor */
	EState	   *estate;			/* this use's, for the index entries */
	TupleTableSlot *found;		/* a tuple read from the table */
	TupleTableSlot *probe;		/* another one, read while found is in use */
	TupleTableSlot *row;		/* the tuple to insert or update */
	const AttrNumber *attnum;	/* by QueueColumn */
} QueueStore;

#define ROW_SET(store, col, datum) \
	((store)->row->tts_values[(store)->attnum[col] - 1] = (datum), \
	 (store)->row->tts_isnull[(store)->attnum[col] - 1] = false)
#define ROW_SET_NULL(store, col) \
	((store)->row->tts_isnull[(store)->attnum[col] - 1] = true)

/* A new item: a payload, or the error of an invalid row (payload NULL). */
typedef struct QueueRow
{
	int64		id;				/* 0: the next from the sequence (inbox) */
	const char *server;			/* the server's name when queued */
	Oid			server_oid;		/* what the item is bound to ... */
	const char *service;		/* ... and was built for */
	const char *key_field;
	const char *enqueued_by;
	const char *person_key;
	const char *payload;
	const char *error;
	TimestampTz enqueued_at;	/* read from the inbox; appends use the transaction's start */
	const char *kind;			/* "upsert" (NULL too) or "disable" */
	bool		held;			/* a disable past max_disables_per_hour */
	/*
	 * skip_unchanged: not queued if the target has this body (sync_state.c);
	 * hashed with the target's url only if the memory knows the person
	 */
	bool		check_unchanged;
	const char *url;
} QueueRow;

/* queue_store.c */
extern QueueStore *queue_store_open(void);
extern void queue_store_put_many(QueueStore *store, QueueRow *rows, int n);
extern void queue_store_close(QueueStore *store);
extern Oid	queue_relation_oid(const char *relname);
extern void find_columns(TupleDesc desc, const char *const *names, int n,
						 AttrNumber *attnum, const char *relname);
extern void text_or_null(QueueStore *store, QueueColumn col, const char *s);
extern char *slot_text(QueueStore *store, TupleTableSlot *slot, QueueColumn col);
extern int64 slot_int64(QueueStore *store, TupleTableSlot *slot, QueueColumn col);
extern void copy_found_to_row(QueueStore *store);
extern void update_row(QueueStore *store, ItemPointer tid);
/* keys of a scan of queue_items_key (server_oid, person_key) */
extern void server_scan_key(ScanKey key, Oid server_oid);
extern void person_scan_key(ScanKey keys, Oid server_oid, const char *person_key);
extern void note_commit_lsn(TupleTableSlot *slot, XLogRecPtr *max_lsn);

/* queue_claim.c: the deliverer's side */
typedef struct ClaimedItem
{
	ItemPointerData tid;		/* the locked version */
	int64		id;
	char	   *person_key;
	uint32		person_lock;	/* see queue_claim.c */
	char	   *enqueued_by;
	char	   *service;		/* what it was built for */
	char	   *key_field;
	bool		disable;		/* kind 'disable' */
	int			attempts;
	/* the person's older items, which this one supersedes (locked too) */
	int			nsuperseded;
	ItemPointerData *superseded_tids;
	int64	   *superseded_ids;
} ClaimedItem;

/* What became of an attempt, to be written to the item. */
typedef struct ItemOutcome
{
	const char *state;
	int			attempts;
	TimestampTz next_attempt_at;
	int			http_status;	/* 0: none */
	const char *error;
	const char *remote_id;		/* NULL: keep the item's */
	TimestampTz delivered_at;	/* 0: none */
} ItemOutcome;

/* Where a server's claims go on: after (or at) a person key; NULL: start */
typedef struct ClaimCursor
{
	char	   *person_key;
	bool		inclusive;
} ClaimCursor;

extern List *queue_claim(QueueStore *store, Oid server_oid, ClaimCursor *cursor,
						 int64 *held, int nheld, int limit);
extern char *queue_fetch_payload(QueueStore *store, ItemPointer tid);
extern bool queue_row_current(QueueStore *store, ItemPointer tid);
extern bool queue_relock(QueueStore *store, ItemPointer tid);
extern void queue_person_unlock(Oid server_oid, uint32 person_lock);
extern void queue_record(QueueStore *store, ItemPointer tid, ItemOutcome *outcome);
extern void queue_remove(QueueStore *store, ItemPointer tid);
extern bool queue_has_successor(QueueStore *store, Oid server_oid,
								const char *key, int64 id);
extern Oid	slot_oid(QueueStore *store, TupleTableSlot *slot, QueueColumn col);

/* queue_move.c */
extern int	queue_move_inbox(QueueStore *store);

#endif							/* CAMPUS_SYNC_QUEUE_STORE_H */
