//! fault simulator (in progress)
