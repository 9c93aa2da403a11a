//! The Lambdas' logic.
