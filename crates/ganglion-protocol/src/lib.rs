//! placeholder during set-up
