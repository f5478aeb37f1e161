"""Server-rendered portal pages (zh-CN by default, en), one module per audience or domain."""
