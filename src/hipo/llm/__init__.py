"""OpenAI-compatible LLM access (judge, ``llm`` segmenter): the ``openai`` SDK, a reply cache, validation, a pool."""

from hipo.llm.client import ChatClient, ChatResult, InvalidReply, LLMError, parse_json_reply
from hipo.llm.pool import PoolStats, RateLimiter, RequestPool
from hipo.llm.reply_cache import JsonCache, request_key

__all__ = [
    "ChatClient",
    "ChatResult",
    "InvalidReply",
    "JsonCache",
    "LLMError",
    "PoolStats",
    "RateLimiter",
    "RequestPool",
    "parse_json_reply",
    "request_key",
]
