/*-------------------------------------------------------------------------
 *
 * queue_store.h
 *	  Putting a person on the queue (campus_sync.queue_items) inside the
 *	  caller's transaction, coalescing with the person's waiting item.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_QUEUE_STORE_H
#define CAMPUS_SYNC_QUEUE_STORE_H

#include "postgres.h"

#include "payload.h"

typedef struct QueueStore QueueStore;

extern QueueStore *queue_store_open(void);
extern int64 queue_store_put(QueueStore *store, const char *server,
							 Payload *payload);
extern void queue_store_close(QueueStore *store);
extern Oid	queue_relation_oid(const char *relname);

#endif							/* CAMPUS_SYNC_QUEUE_STORE_H */
