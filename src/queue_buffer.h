/*-------------------------------------------------------------------------
 *
 * queue_buffer.h
 *	  The sync trigger's items, kept in memory until the transaction
 *	  commits and then appended to the inbox in multi-insert batches.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_QUEUE_BUFFER_H
#define CAMPUS_SYNC_QUEUE_BUFFER_H

#include "postgres.h"

#include "queue_store.h"

extern void queue_buffer_init(void);
extern bool queue_buffer_add(QueueRow *row);
extern bool queue_buffer_holds(Oid server_oid, const char *person_key);
extern void queue_buffer_flush(void);

#endif							/* CAMPUS_SYNC_QUEUE_BUFFER_H */
