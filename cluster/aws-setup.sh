#!/usr/bin/env bash
# One-time AWS setup for cluster/aws-gpu.yaml, then the launcher config to use, with today's AMI:
#
#   cluster/aws-setup.sh <bucket> [out.yaml]     # from the checkout's root; writes ./aws-gpu.yaml
#   ray up aws-gpu.yaml
#
# 1. The instance profile `curriculum-study-node` for the head and the workers: the workers write
#    their checkpoints to s3://<bucket>/... themselves, and the head's autoscaler starts workers
#    with that profile (AmazonEC2FullAccess + iam:PassRole on its own role). Ray's default profile
#    would go to the head only. One profile keeps the setup short; split it for least privilege.
# 2. The AMI: AWS's current "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)" in the
#    config's region, from AWS's public SSM parameter (Ray's own default AMI is Ubuntu 18.04 with
#    CUDA 11.2: too old a driver for current torch wheels).
# 3. Ray's token in ~/.ray/auth_token (copied to every node by the config) if there is none yet.
# Needs the AWS CLI with credentials that may manage IAM and read SSM parameters. Safe to re-run.
#
# Environment: AWS_GPU_TEMPLATE (cluster/aws-gpu.yaml), AWS_REGION (the template's provider.region).
set -euo pipefail

bucket=${1:?usage: cluster/aws-setup.sh <bucket> [out.yaml]}
bucket=${bucket#s3://}
bucket=${bucket%%/*}
out=${2:-$PWD/aws-gpu.yaml}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
template=${AWS_GPU_TEMPLATE:-$repo/cluster/aws-gpu.yaml}
region=${AWS_REGION:-$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["provider"]["region"])' "$template")}
role=curriculum-study-node
parameter=/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id

if ! aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
  echo "error: bucket $bucket is missing or not yours; create it: aws s3 mb s3://$bucket --region $region" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/trust.json" <<'EOF'
{"Version": "2012-10-17",
 "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
EOF
cat >"$tmp/policy.json" <<EOF
{"Version": "2012-10-17",
 "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": "arn:aws:s3:::$bucket"},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
   "Resource": "arn:aws:s3:::$bucket/*"},
  {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::*:role/$role"}]}
EOF
if ! aws iam get-role --role-name "$role" >/dev/null 2>&1; then
  echo "creating IAM role $role" >&2
  aws iam create-role --role-name "$role" --assume-role-policy-document "file://$tmp/trust.json" >/dev/null
fi
aws iam attach-role-policy --role-name "$role" --policy-arn arn:aws:iam::aws:policy/AmazonEC2FullAccess
aws iam put-role-policy --role-name "$role" --policy-name curriculum-study --policy-document "file://$tmp/policy.json"
if ! aws iam get-instance-profile --instance-profile-name "$role" >/dev/null 2>&1; then
  echo "creating instance profile $role" >&2
  aws iam create-instance-profile --instance-profile-name "$role" >/dev/null
  aws iam add-role-to-instance-profile --instance-profile-name "$role" --role-name "$role"
  sleep 15  # IAM is eventually consistent: a profile used at once can be "invalid"
fi

ami=$(aws ssm get-parameter --region "$region" --name "$parameter" --query Parameter.Value --output text)
if [[ ! "$ami" =~ ^ami-[0-9a-f]+$ ]]; then
  echo "error: no AMI from $parameter in $region (got '$ami'); list the current names with" \
       "aws ssm get-parameters-by-path --region $region --path /aws/service/deeplearning/ami/x86_64" >&2
  exit 2
fi
sed "s/<ami-id>/$ami/g" "$template" >"$out"

if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "$HOME/.ray/auth_token" ]]; then
  ray get-auth-token --generate >/dev/null
fi

cat >&2 <<EOF
ready: instance profile $role (bucket $bucket), AMI $ami ($region) in $out
  ray up $out
  ... STUDY_STORAGE_PATH=s3://$bucket/curriculum-study/ray cluster/submit.sh  (cluster/README.md, "AWS")
EOF
