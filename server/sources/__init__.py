"""Where features come from: the FeatureSource port and its implementations
(Feast's online stores read directly, the item cache and its refresh)."""
