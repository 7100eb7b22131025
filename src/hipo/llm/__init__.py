"""OpenAI-compatible LLM access (judge, ``llm`` segmenter): a stdlib HTTP client with retries and a reply cache."""

from hipo.llm.cache import JsonCache, request_key
from hipo.llm.client import ChatClient, ClientStats, InvalidReply, LLMError, parse_json_reply

__all__ = ["ChatClient", "ClientStats", "InvalidReply", "JsonCache", "LLMError", "parse_json_reply", "request_key"]
