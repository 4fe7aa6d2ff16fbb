-- The hashtag ranker (the small logistic model that turns each candidate tag's signals into the
-- chance a creator would post it) joins the registry: the trainer refits it on pulled videos and
-- creators' feedback and promotes a version only when it ranks their held-out posts better.
ALTER TABLE model_versions DROP CONSTRAINT model_versions_model_check;
ALTER TABLE model_versions ADD CONSTRAINT model_versions_model_check CHECK (model IN ('hashtags', 'virality', 'ranker'));
