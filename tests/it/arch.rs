//! arch tests
