//! Portico plugin SDK (to be written).
