/*-------------------------------------------------------------------------
 *
 * inbox.h
 *	  campus_sync.inbox: where enqueue() and the sync trigger append new
 *	  items.  It has no index, so appending costs a writer about what a
 *	  heap insert costs; the delivery engine moves what it finds there into
 *	  campus_sync.queue_items (queue_move.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_INBOX_H
#define CAMPUS_SYNC_INBOX_H

#include "postgres.h"

#include "queue_store.h"

/* An item taken from the inbox: the row, where it was, its id. */
typedef struct InboxItem
{
	ItemPointerData tid;
	int64		id;
	QueueRow	row;
} InboxItem;

extern int64 inbox_next_id(void);
extern int64 inbox_put(QueueRow *row);
extern void inbox_put_many(QueueRow *rows, int n);
typedef void (*InboxBatchFunc) (InboxItem *items, int n, void *arg);

extern int	inbox_drain(InboxBatchFunc func, void *arg);

#endif							/* CAMPUS_SYNC_INBOX_H */
