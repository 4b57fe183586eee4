//! OWNER: see ARCHITECTURE.md. Stub.
