//! The store: database tables (runs, executions, artifacts, lineage edges, checkpoints,
//! metrics, stat cache, reservations) behind the [`Store`] trait, plus the
//! content-addressed object directory. SQLite by default, PostgreSQL on a cluster; the
//! same migrations (one folder per database) and the same code paths serve both.
//!
//! The schema is a supported interface: docs/schema.md.
