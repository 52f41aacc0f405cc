"""Package data that is public fact, not weights: the 1,000 ImageNet-1k synsets in torchvision's class-index order
(``imagenet_synsets.txt``: the ILSVRC-2012 WordNet IDs sorted, n01440764 "tench" = index 0 ... n15075141 = 999)."""
