/*-------------------------------------------------------------------------
 *
 * sync_state.h
 *	  The delivered-state memory (campus_sync.sync_state): per server and
 *	  person key, the hash of the body the target last acknowledged, so
 *	  that a body it already has is not sent again.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_SYNC_STATE_H
#define CAMPUS_SYNC_SYNC_STATE_H

#include "postgres.h"

#include "common/sha2.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

#include "queue_store.h"
#include "target.h"

#define BODY_HASH_LEN PG_SHA256_DIGEST_LENGTH

/* What the memory holds of one person. */
typedef struct DeliveredState
{
	uint8		body_hash[BODY_HASH_LEN];
	char	   *remote_id;		/* NULL: none known */
	TimestampTz delivered_at;
} DeliveredState;

/* Deliveries of one server not written to the memory yet. */
typedef struct DeliveredBatch DeliveredBatch;

extern void body_hash(SyncTarget *target, const char *body, uint8 *hash);
extern void body_hash_for_url(const char *url, const char *body, uint8 *hash);
extern bool delivered_unchanged(SyncTarget *target, const char *person_key,
								const uint8 *hash, DeliveredState *state);
extern int	queue_rows_drop_unchanged(QueueRow *rows, int n);

extern DeliveredBatch *delivered_batch_create(Oid server_oid, MemoryContext mcxt);
extern void delivered_batch_add(DeliveredBatch *batch, const char *person_key,
								const uint8 *hash, const char *remote_id);
extern void delivered_batch_save(DeliveredBatch *batch);

#endif							/* CAMPUS_SYNC_SYNC_STATE_H */
