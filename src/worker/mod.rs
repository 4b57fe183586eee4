//! The per-interface worker: one thread, one io_uring. Stub.
