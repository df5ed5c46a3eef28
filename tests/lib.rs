//! Black-box API tests live in `api/`.
