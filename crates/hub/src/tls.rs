//! CONTRACT SKELETON (owned by hub-core). TLS material: generated CA and server certificate, rustls configs.
