/*
 * audit.h - the night audit inside the daemon: audit.run, the drivers that step runs through
 * the database, and the schedule (docs/audit.md).
 *
 * The work is in SQL (sql/009_audit.sql): a run is a row that moves through seven steps, each
 * step (each chunk of the posting, each report) one transaction. This module only drives: it
 * claims a run (fl_audit_claim), then calls fl_audit_step(run, owner) through the pool, one
 * call after the other from the callbacks, until the answer is done, blocked or failed. Nothing
 * waits on the loop. The owner is this daemon's instance id ("host:port"), stable across a
 * restart, so a restarted daemon resumes its own runs at once; another daemon takes a run over
 * only when its lease (30 s without a step) has expired.
 *
 * Notifications: audit.started and audit.finished (with the business date) to the outlets of
 * the property; audit.progress (the run after each step) to the connections that asked for the
 * run with audit.run.
 *
 * The schedule: every 30 s (the first time 2 s after the start) fl_audit_due() names the
 * properties whose audit is due (settings.audit_schedule) or whose run this daemon should
 * resume; each is claimed and driven like an audit.run without a caller.
 *
 * Lifecycle: audit_new() after the database pool -> audit_run() for each audit.run call ->
 * audit_free() before db_pool_free(): drivers and schedule queries still waiting for the
 * database are orphaned and free themselves (and, last, the module) when db_pool_free() calls
 * them back.
 */
#ifndef FOLIOD_AUDIT_H
#define FOLIOD_AUDIT_H

struct server;
struct rpc_call;
struct audit;

/* NULL when memory is exhausted. */
struct audit *audit_new(struct server *srv);
void audit_free(struct audit *a);

/* The handler of audit.run: claims the property's run, drives its first step and answers with
 * it ({"state", "created", "resumed", "run"}), or audit_in_progress, audit_blocked,
 * audit_failed; then keeps driving the run in the background. */
void audit_run(struct rpc_call *call);

#endif
