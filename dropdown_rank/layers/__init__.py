"""Keras layers, one per file. Each docstring states its mode, inputs and outputs with shapes."""
from dropdown_rank.layers.candidate_relations import CandidateRelations
from dropdown_rank.layers.gat_aggregator import GATAggregator
from dropdown_rank.layers.graph_context import GraphContext
from dropdown_rank.layers.hgcn_aggregator import HGCNAggregator
from dropdown_rank.layers.position_bias import PositionBias
from dropdown_rank.layers.request_features import RequestFeatures
from dropdown_rank.layers.spektral_gat_star import SpektralGATStar
from dropdown_rank.layers.spektral_gcn_star import SpektralGCNStar
from dropdown_rank.layers.target_attention import TargetAttention
from dropdown_rank.layers.time_gap import TimeGapEmbedding

__all__ = ["CandidateRelations", "GATAggregator", "GraphContext", "HGCNAggregator", "PositionBias", "RequestFeatures", "SpektralGATStar", "SpektralGCNStar",
           "TargetAttention", "TimeGapEmbedding"]
