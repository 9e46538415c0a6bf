"""Cloud providers behind one small protocol: prices, launch, describe, list_managed, terminate."""
