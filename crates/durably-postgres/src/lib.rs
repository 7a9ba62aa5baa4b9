//! The Postgres store of durably (being built: see issue 4).
