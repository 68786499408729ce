/*-------------------------------------------------------------------------
 *
 * pause.h
 *	  Paused targets (campus_sync.pause() / resume()): see pause.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_PAUSE_H
#define CAMPUS_SYNC_PAUSE_H

#include "postgres.h"

extern char *server_pause_text(Oid server_oid);
extern void check_not_paused(Oid server_oid, const char *server_name);

#endif							/* CAMPUS_SYNC_PAUSE_H */
