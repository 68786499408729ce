/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The parts of campus_sync that live in shared memory when it is
 *	  preloaded: each adds its struct (and, if it wants one, an LWLock)
 *	  here from _PG_init; one pair of hooks requests and attaches them all.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_SHMEM_H
#define CAMPUS_SYNC_SHMEM_H

#include "postgres.h"

#include "storage/lwlock.h"

/* Fills a part's zeroed struct when the server creates it. */
typedef void (*ShmemPartInit) (void *part, LWLock *lock);

extern void shmem_part_add(const char *name, Size size, bool with_lock,
						   void **attach_to, ShmemPartInit init);
extern void shmem_parts_install(void);

#endif							/* CAMPUS_SYNC_SHMEM_H */
