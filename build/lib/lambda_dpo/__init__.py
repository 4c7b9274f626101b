"""λ-DPO: multi-preference λ-weighted listwise DPO, and the search for the best λ (docs/)."""

__version__ = "0.2.0"
